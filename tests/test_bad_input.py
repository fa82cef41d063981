"""Bad input, one class per case: each fails at once with exactly one clear line naming the problem and the fix.

Every case builds its input, triggers the failure and compares the whole message (paths and digests
that depend on the temporary folder are computed, the rest is literal).
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from bindlib.core import io
from bindlib.__main__ import main
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import TaskConfig, sample_batch
from bindlib.vision import encoders as E

TASK = TaskConfig()


def tiny_checkpoint(tmp_path, **cfg):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=TASK.vocab.size, n_layers=1, d_model=16, n_heads=2, d_ff=32, **cfg))
    return io.save_checkpoint(model, tmp_path / "ckpt", meta={"regime": "text_only", "train_config": {"task": {}}})


def overlapping_ranges(tmp_path):
    return lambda: TaskConfig(id_range=(2, 8), ood_range=(8, 16)), (
        "id_range (2, 8) and ood_range (8, 16) overlap, so evaluation would count the shared N twice; "
        "make them disjoint (e.g. id 2..8, ood 9..16).")


def impossible_range(tmp_path):
    return lambda: TaskConfig(ood_range=(9, 40)), (
        "ood_range: N=40 needs 40 distinct colours, shapes and items, but the vocabulary allows at most 16 "
        "(n_colors=16, n_shapes=16, n_items=32). Use N in 1..16 or enlarge the vocabulary.")


def unknown_encoder(tmp_path):
    return lambda: E.get_encoder("resnet9"), (
        "unknown encoder 'resnet9': allowed ('resnet152', 'vit_b16', 'dinov3', 'dinov2', 'random_cnn', 'pixels', "
        "'project_cnn', 'project_vit', 'project_cnn_grid').")


def missing_checkpoint(tmp_path):
    where = tmp_path / "nowhere"
    return lambda: io.load_checkpoint(where), (
        f"no checkpoint at {where}: model.json is missing. Train one with `python -m bindlib train --checkpoint "
        f"{where}` or check the path (committed ones live in data/checkpoints/).")


def corrupt_checkpoint(tmp_path):
    path = tiny_checkpoint(tmp_path)
    weights = path / "model.safetensors"
    want = io.sha256_file(weights)
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    return lambda: io.load_checkpoint(path), (
        f"sha256 mismatch for {weights}: expected {want}, got {io.sha256_bytes(bytes(blob))}. The file is corrupt or "
        f"was changed after saving; restore it with `git checkout -- {weights}` or retrain it.")


def edited_model_json(tmp_path):
    path = tiny_checkpoint(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["model_config"]["pos_encoding"] = "none"  # the edit that once loaded silently with ID accuracy 0.27
    (path / "model.json").write_text(json.dumps(meta))
    return lambda: io.load_checkpoint(path), (
        f"{path / 'model.json'} was edited after saving (its manifest sha256 does not match); restore it with "
        f"`git checkout -- {path / 'model.json'}` or retrain the checkpoint.")


def model_checkpoint_mismatch(tmp_path):
    path = tiny_checkpoint(tmp_path)
    return lambda: io.load_checkpoint(path, expect={"n_layers": 4}), (
        f"checkpoint {path} has n_layers=1, but 4 was expected; load the matching checkpoint.")


def gpu_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return lambda: io.resolve_device("cuda"), (
        f"device 'cuda' was requested but no CUDA GPU is visible to torch (torch {torch.__version__}). "
        f"Use --device cpu (or auto), or run on a machine with a GPU.")


def offline_hub(tmp_path, monkeypatch):
    monkeypatch.delenv(E.WEIGHTS_ENV, raising=False)
    cache = tmp_path / "hf"
    return lambda: E.get_encoder("vit_b16", cache_dir=str(cache)), (
        f"encoder 'vit_b16' needs the pretrained weights of google/vit-base-patch16-224, which are not on this "
        f"machine (looked in: Hugging Face cache {cache}), and downloading is off. To get them, on a machine with "
        f"internet run `hf download google/vit-base-patch16-224 --local-dir vit_b16` (older huggingface_hub: "
        f"`huggingface-cli download google/vit-base-patch16-224 --local-dir vit_b16`), copy the folder here, then "
        f"pass weights='path/to/vit_b16' or set BINDLIB_WEIGHTS_DIR to the folder that contains vit_b16/. Where a "
        f"network exists, get_encoder('vit_b16', allow_download=True) downloads into the Hugging Face cache.")


def token_ids_out_of_range(tmp_path):
    model = Transformer(ModelConfig(vocab_size=20, n_layers=1, d_model=16, n_heads=2, d_ff=32))
    return lambda: model(torch.tensor([[1, 2, 20]])), (
        "token ids must lie in 0..19 (the model's vocab_size), got 1..20; the prompts come from another vocabulary.")


def too_long_sequence(tmp_path):
    model = Transformer(ModelConfig(vocab_size=TASK.vocab.size, n_layers=1, d_model=16, n_heads=2, d_ff=32,
                                    pos_encoding="learned", max_len=40))
    batch = sample_batch(TASK, 2, seed=0, n=16)  # 68 tokens
    return lambda: model(**batch.model_inputs()), (
        "a sequence reaches position 67, but the model takes positions 0..39 (max_len); use fewer objects or a "
        "smaller offset.")


def image_wrong_size(tmp_path):
    enc = E.get_encoder("pixels", image_size=32, patch=16)
    return lambda: enc.encode(torch.rand(1, 3, 32, 48)), (
        "pixels: expected square images [B, 3, H, H], got shape (1, 3, 32, 48).")


def image_wrong_dtype(tmp_path):
    enc = E.get_encoder("pixels", image_size=32, patch=16)
    return lambda: enc.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)), (
        "pixels: expected float images in 0..1, got dtype torch.uint8; divide uint8 images by 255.")


def image_wrong_range(tmp_path):
    enc = E.get_encoder("pixels", image_size=32, patch=16)
    images = torch.full((1, 3, 32, 32), 0.5)
    images[0, 0, 0, 0] = 255.0
    return lambda: enc.encode(images), (
        "pixels: expected pixel values in 0..1, got 0.5..255; undo any normalisation (the encoder normalises itself).")


def empty_results_file(tmp_path):
    f = tmp_path / "results" / "regime_x.json"
    f.parent.mkdir()
    f.write_text("")
    return lambda: io.load_results(results_dir=f.parent), (
        f"results file {f} is empty; delete it and rerun the command that writes it.")


def truncated_results_file(tmp_path):
    f = tmp_path / "results" / "regime_x.json"
    f.parent.mkdir()
    f.write_text('{"kind": "regime", "id_accuracy": 0.9')
    return lambda: io.load_results(results_dir=f.parent), (
        f"results file {f} is truncated or not JSON (Expecting ',' delimiter: line 1 column 38 (char 37)); delete it "
        f"and rerun the command that writes it.")


def committed_file(tmp_path):
    target = io.CHECKPOINTS_DIR / "text_only_cpu_s0"
    return lambda: io.refuse_overwrite(target), (
        "data/checkpoints/text_only_cpu_s0 is committed; pass --overwrite to replace it, or choose another name "
        "(--checkpoint / --results).")


def dirty_tree(tmp_path, monkeypatch):
    fake = {("rev-parse", "HEAD"): "abc\n", ("diff", "HEAD", "--binary"): "diff --git a/x b/x\n",
            ("diff", "HEAD", "--name-only"): "x\ny\n", ("ls-files", "--others", "--exclude-standard", "--", "bindlib"): ""}
    monkeypatch.setattr(io, "_git", lambda *args: fake[args])
    return lambda: io.begin_run(allow_dirty=False), (
        "the working tree has uncommitted changes in 2 file(s) (untracked .py files under bindlib/ count), so the "
        "results would not be pinned to a commit: commit or stash them, or pass --allow-dirty (the diff is then "
        "stored beside the results).")


CASES = [overlapping_ranges, impossible_range, unknown_encoder, missing_checkpoint, corrupt_checkpoint,
         edited_model_json, model_checkpoint_mismatch, gpu_absent, offline_hub, token_ids_out_of_range,
         too_long_sequence, image_wrong_size, image_wrong_dtype, image_wrong_range, empty_results_file,
         truncated_results_file, committed_file, dirty_tree]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_fails_with_one_clear_line(case, tmp_path, monkeypatch):
    args = (tmp_path, monkeypatch) if case.__code__.co_argcount == 2 else (tmp_path,)
    trigger, message = case(*args)
    with pytest.raises(Exception) as err:
        trigger()
    assert str(err.value) == message
    assert "\n" not in message


# ---------------------------------------------------------------- through the command line: one line, exit code 2
def test_unknown_flag_is_not_a_prefix_match(capsys):
    assert main(["train", "--step", "10"]) == 2  # once read as --steps-scale 10
    assert capsys.readouterr().err == ("error: unrecognized arguments: --step 10 (`python -m bindlib --help` lists "
                                       "the flags)\n")


def test_read_only_data_folder_fails_before_work(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(data)) else real_access(p, mode))
    argv = ["pretrain-encoder", "--allow-dirty", "--name", "project_cnn", "--tiny", "--out", str(data / "enc"),
            "--results-dir", str(data / "results")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"error: cannot write to {data}: {data} is read-only for this user; "
                                       f"fix its permissions or write elsewhere.\n")
    assert not (data / "enc").exists()


def test_oserror_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--allow-dirty", "--checkpoint", str(tmp_path / "x" / ("a" * 300))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------- the audit's cases: one line, exit status 2, nothing written
import subprocess  # noqa: E402

import bindlib.experiments.imagestage  # noqa: E402
import bindlib.experiments.settings  # noqa: E402
import bindlib.training.train  # noqa: E402
from bindlib.experiments import migrate as M  # noqa: E402
from bindlib.experiments import recipes  # noqa: E402


def tree() -> str:
    """What git sees of the working tree (untracked files included): a refused command leaves it as it was."""
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=io.REPO_ROOT,
                          capture_output=True, text=True, check=True).stdout


def refused(capsys, argv, *words) -> str:
    """Run ``python -m bindlib <argv>``: exit status 2, exactly one line on stderr, naming each of ``words``,
    and nothing changed in the working tree. Returns the line."""
    before = tree()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert tree() == before
    return err


def snapshot(folder) -> dict:
    """Every file under ``folder`` and its bytes (to show a refused command wrote nothing there)."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def old_checkpoint(tmp_path, name="x", **meta):
    """A checkpoint as code older than manifests saved it (absolute paths, no manifest_sha256)."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=TASK.vocab.size, n_layers=1, d_model=16, n_heads=2, d_ff=32))
    path = io.save_checkpoint(model, tmp_path / "checkpoints" / name,
                              meta={"regime": "text_only", "init_from": "/elsewhere/repo/data/checkpoints/y", **meta})
    old = json.loads((path / "model.json").read_text())
    del old["manifest_sha256"]
    (path / "model.json").write_text(json.dumps(old))
    (tmp_path / "results").mkdir(exist_ok=True)
    return path


def dirty_git(monkeypatch):
    """io._git as in a tree with an uncommitted change to a tracked file."""
    real = io._git
    fake = {("diff", "HEAD", "--binary"): "diff --git a/x b/x\n", ("diff", "HEAD", "--name-only"): "x\n"}
    monkeypatch.setattr(io, "_git", lambda *args, **kw: fake[args] if args in fake else real(*args, **kw))


class TestMigrate:
    """Case 1: migrate upgrades files older code wrote; it never signs an edit, and it writes like every command."""

    def argv(self, tmp_path, *more):
        return ["migrate", "--allow-dirty", "--checkpoints-dir", str(tmp_path / "checkpoints"),
                "--results-dir", str(tmp_path / "results"), *more]

    def test_an_old_checkpoint_is_upgraded(self, tmp_path, capsys):
        path = old_checkpoint(tmp_path)
        assert main(self.argv(tmp_path)) == 0
        _, meta = io.load_checkpoint(path)
        assert meta["init_from"] == "data/checkpoints/y"

    def test_an_edited_model_json_is_refused(self, tmp_path, capsys):
        path = tiny_checkpoint(tmp_path)  # saved with a manifest, then edited
        meta = json.loads((path / "model.json").read_text())
        meta["model_config"]["pos_encoding"] = "none"
        (path / "model.json").write_text(json.dumps(meta))
        (tmp_path / "checkpoints").mkdir()
        (path.parent / "ckpt").rename(tmp_path / "checkpoints" / "ckpt")
        (tmp_path / "results").mkdir()
        before = snapshot(tmp_path)
        refused(capsys, self.argv(tmp_path), "model.json", "edited")
        assert snapshot(tmp_path) == before
        with pytest.raises(io.CheckpointError, match="edited"):  # still refused at load: nothing was signed
            io.load_checkpoint(tmp_path / "checkpoints" / "ckpt")

    def test_changed_weights_are_refused(self, tmp_path, capsys):
        path = old_checkpoint(tmp_path)
        blob = bytearray((path / "model.safetensors").read_bytes())
        blob[-5] ^= 0xFF
        (path / "model.safetensors").write_bytes(bytes(blob))
        before = snapshot(tmp_path)
        refused(capsys, self.argv(tmp_path), "sha256", "model.safetensors")
        assert snapshot(tmp_path) == before

    def test_a_removed_manifest_of_a_committed_file_is_refused(self, tmp_path, capsys, monkeypatch):
        old_checkpoint(tmp_path)
        monkeypatch.setattr(M, "_committed_manifest", lambda meta_file: True)  # its committed version had one
        before = snapshot(tmp_path)
        refused(capsys, self.argv(tmp_path), "model.json", "manifest_sha256")
        assert snapshot(tmp_path) == before

    def test_model_json_holding_null_is_refused(self, tmp_path, capsys):
        path = old_checkpoint(tmp_path)
        (path / "model.json").write_text("null")
        refused(capsys, self.argv(tmp_path), str(path / "model.json"), "null")
        assert (path / "model.json").read_text() == "null"

    def test_committed_files_need_overwrite(self, tmp_path, capsys, monkeypatch):
        path = old_checkpoint(tmp_path)
        monkeypatch.setattr(io, "is_committed", lambda p: True)
        before = snapshot(tmp_path)
        refused(capsys, self.argv(tmp_path), "--overwrite", "committed")
        assert snapshot(tmp_path) == before
        assert main(self.argv(tmp_path, "--overwrite")) == 0
        assert io.read_checkpoint_meta(path)["init_from"] == "data/checkpoints/y"

    def test_a_dirty_tree_needs_allow_dirty(self, tmp_path, capsys, monkeypatch):
        old_checkpoint(tmp_path)
        dirty_git(monkeypatch)
        before = snapshot(tmp_path)
        refused(capsys, [a for a in self.argv(tmp_path) if a != "--allow-dirty"], "--allow-dirty")
        assert snapshot(tmp_path) == before

    def test_no_manifest_message_does_not_send_edits_to_migrate(self, tmp_path):
        path = old_checkpoint(tmp_path)
        with pytest.raises(io.CheckpointError) as err:
            io.load_checkpoint(path)
        msg = str(err.value)
        assert "\n" not in msg and f"git checkout -- {path / 'model.json'}" in msg and "unedited" in msg
        assert "once to add it" not in msg


class TestResultsFiles:
    """Case 2: a results file is checked on read, `reproduce` does not skip a malformed one, and globs skip strays."""

    BAD = {"list_of_numbers": ("[1, 2, 3]", "int"), "null": ("null", "null"), "no_kind": ("{}", "kind"),
           "empty_list": ("[]", "empty list"),
           "id_accuracy_above_1": ('{"kind": "regime", "id_accuracy": 1.5}', "id_accuracy"),
           "ood_accuracy_nan": ('{"kind": "regime", "ood_accuracy": NaN}', "ood_accuracy"),
           "accuracy_by_n_negative": ('{"kind": "regime", "accuracy_by_n": {"3": -0.25}}', "accuracy_by_n.3"),
           "accuracy_by_n_infinite": ('{"kind": "regime", "accuracy_by_n": {"9": Infinity}}', "accuracy_by_n.9"),
           "history_accuracy": ('{"kind": "learning_curve", "history": [{"acc_two_hop": 7}]}', "history[0].acc_two_hop"),
           "negative_seed": ('{"kind": "regime", "seed": -1}', "seed")}

    @pytest.mark.parametrize("case", sorted(BAD))
    def test_a_malformed_record_names_the_file_and_the_field(self, case, tmp_path):
        text, field = self.BAD[case]
        f = tmp_path / "regime_x.json"
        f.write_text(text)
        for read in (lambda: io.read_results(f), lambda: io.read_records(f), lambda: io.load_results(results_dir=tmp_path)):
            with pytest.raises(ValueError) as err:
                read()
            assert str(f) in str(err.value) and field in str(err.value) and "\n" not in str(err.value)

    @pytest.mark.parametrize("text", ["[1, 2, 3]", "{}", '{"kind": "training"}'])
    def test_reproduce_does_not_take_a_malformed_file_for_done(self, text, tmp_path, monkeypatch, capsys):
        for name in ("RESULTS_DIR", "CHECKPOINTS_DIR"):
            monkeypatch.setattr(io, name, tmp_path / name)
        monkeypatch.setattr(recipes, "run_regime", lambda *a, **k: pytest.fail("reproduce started training"))
        run = recipes.planned_runs("cpu", [0], ["text_only"])[0]
        f = io.RESULTS_DIR / f"{recipes.results_name(run, 'cpu')}.json"
        f.parent.mkdir()
        f.write_text(text)
        refused(capsys, ["reproduce", "--allow-dirty", "--seeds", "0", "--regimes", "text_only", "--device", "cpu",
                         "--quiet"], f.name)
        assert "done already" not in capsys.readouterr().out and f.read_text() == text

    def test_a_stray_copy_is_not_globbed(self, tmp_path):
        good = {"kind": "training", "regime": "text_only", "seed": 0, "id_accuracy": 0.9}
        (tmp_path / "training_text_only_cpu_s0.json").write_text(json.dumps(good))
        strays = ["training_text_only_cpu_s0 copy.json", "training_text_only_cpu_s0 (1).json",
                  "training_text_only_cpu_s0_copy.json", "training_text_only_cpu_s0.bak.json", "notes.txt"]
        for name in strays:
            (tmp_path / name).write_text(json.dumps({**good, "id_accuracy": 0.1}))
        assert io.load_results("training_text_only_*.json", tmp_path) == [good]
        assert all(io.is_run_name(n) for n in ("regime_text_only_cpu_s0_steps0.01x", "curve_direct_L6_40k_s1"))
        assert [f.name for f in io.results_files("training_*.json", tmp_path)] == ["training_text_only_cpu_s0.json"]
        assert sorted(f.name for f in io.unexpected_results_files(tmp_path)) == sorted(strays)

    def test_data_results_holds_no_unexpected_file(self):
        assert io.unexpected_results_files() == []


class TestPretrainedOverwrite:
    """Case 3: only --overwrite replaces an existing results file; --force is gone."""

    def test_existing_results_file_is_kept(self, tmp_path, capsys):
        f = tmp_path / "pretrained_qwen3.json"
        f.write_text('{"kind": "pretrained"}\n')
        argv = ["pretrained", "--allow-dirty", "--pair", "qwen3", "--tiny", "--results-dir", str(tmp_path)]
        refused(capsys, argv + ["--force"], "--force")
        err = refused(capsys, argv, f.name, "--overwrite")
        assert "--force" not in err
        assert f.read_text() == '{"kind": "pretrained"}\n'


STEP_FLAGS = {
    "curve_steps_0": ["curve", "--variant", "direct", "--steps", "0"],
    "curve_steps_negative": ["curve", "--variant", "direct", "--steps", "-5"],
    "bench_steps_0": ["bench", "--steps", "0"],
    "train_steps_scale_0": ["train", "--steps-scale", "0"],
    "train_steps_scale_nan": ["train", "--steps-scale", "nan"],
    "reproduce_steps_scale_negative": ["reproduce", "--steps-scale", "-1"],
    "reproduce_steps_scale_inf": ["reproduce", "--steps-scale", "inf"],
    "reproduce_steps_scale_nan": ["reproduce", "--steps-scale", "nan"],
    "image_stage_image_steps_0": ["image-stage", "--recipe", "replay", "--image-steps", "0"],
    "image_stage_mix_steps_negative": ["image-stage", "--recipe", "replay", "--mix-steps", "-1"],
    "image_stage_image_steps_fraction": ["image-stage", "--recipe", "replay", "--image-steps", "1.5"],
    "bench_image_steps_0": ["bench-image", "--steps", "0"],
    "expand_vocab_steps_0": ["expand-vocab", "--init-from", "data/checkpoints/text_only_cpu_s0", "--steps", "0"],
    "pretrain_encoder_max_steps_0": ["pretrain-encoder", "--name", "project_cnn", "--max-steps", "0"],
    "interp_pairs_0": ["interp", "--regime", "text_only", "--pairs", "0"],
}


class TestStepFlags:
    """Case 4 (and interp --pairs, case 6): step counts are whole numbers >= 1 and scales finite numbers > 0,
    refused as they are parsed; test-sized runs write under runs/smoke/, not data/."""

    @pytest.mark.parametrize("case", sorted(STEP_FLAGS))
    def test_refused_at_parse_time(self, case, capsys):
        argv = STEP_FLAGS[case]
        flag = next(a for a in argv if a.startswith("--") and a not in ("--variant", "--recipe", "--init-from",
                                                                         "--name", "--regime"))
        refused(capsys, [*argv, "--allow-dirty"], flag)

    def test_a_short_curve_writes_under_runs_smoke(self, tmp_path, monkeypatch, capsys):
        monkeypatch.setattr(io, "RESULTS_DIR", tmp_path / "data" / "results")
        monkeypatch.setattr(bindlib.experiments.settings, "SMOKE_ROOT", tmp_path / "smoke")
        row = {"step": 5, "wall_seconds": 0.1, "acc_two_hop": 0.1}
        monkeypatch.setattr(bindlib.training.train, "train", lambda cfg, **kw: (None, [row]))
        assert main(["curve", "--allow-dirty", "--variant", "direct", "--steps", "5", "--device", "cpu", "--quiet"]) == 0
        assert (tmp_path / "smoke" / "results" / "curve_direct_s0.json").exists()
        assert not (tmp_path / "data").exists()

    def test_a_short_image_stage_writes_under_runs_smoke(self, tmp_path, monkeypatch, capsys):
        monkeypatch.setattr(io, "RESULTS_DIR", tmp_path / "data" / "results")
        monkeypatch.setattr(io, "CHECKPOINTS_DIR", tmp_path / "data" / "checkpoints")
        monkeypatch.setattr(bindlib.experiments.settings, "SMOKE_ROOT", tmp_path / "smoke")
        seen = {}

        def fake(*args, data_root=None, **kw):
            seen["data_root"] = data_root
            return "imagestage_x", {"kind": "image_recipe", "id_accuracy": 0.5, "ood_accuracy": 0.5,
                                    "image_id_accuracy": 0.5, "meets_targets": False}

        monkeypatch.setattr(bindlib.experiments.imagestage, "run_image_recipe", fake)
        assert main(["image-stage", "--allow-dirty", "--recipe", "replay", "--image-steps", "20", "--quiet"]) == 0
        assert seen["data_root"] == tmp_path / "smoke"
        assert (tmp_path / "smoke" / "results" / "imagestage_x.json").exists() and not (tmp_path / "data").exists()

    def test_run_image_recipe_puts_its_checkpoint_under_the_data_root(self, tmp_path, monkeypatch):
        seen = []

        def stop(path, overwrite=False):
            seen.append(path)
            if len(seen) == 2:
                raise KeyboardInterrupt  # before any work

        monkeypatch.setattr(io, "refuse_overwrite", stop)
        with pytest.raises(KeyboardInterrupt):
            bindlib.experiments.imagestage.run_image_recipe("replay", 0, "project_cnn_grid", "cpu", "cmd", "abc", image_steps=20,
                                                mix_steps=10, data_root=tmp_path / "smoke")
        assert [p.parent for p in seen] == [tmp_path / "smoke" / "checkpoints", tmp_path / "smoke" / "results"]


class TestInterpRegime:
    """Case 5: interp files a checkpoint's results only under the regime (and encoder) its model.json records."""

    def relabel(self, path, **meta):
        io.atomic_write_json(path / "model.json", io.with_manifest({**json.loads((path / "model.json").read_text()),
                                                                    **meta}))
        return path

    def test_a_text_checkpoint_is_not_filed_as_image_text(self, tmp_path, capsys):
        path = tiny_checkpoint(tmp_path)  # regime text_only
        out = tmp_path / "out"
        refused(capsys, ["interp", "--allow-dirty", "--regime", "image_text", "--checkpoint", str(path), "--kinds",
                         "knockout", "--results-dir", str(out)], "image_text", "text_only", "--regime")
        assert not out.exists()

    def test_an_image_checkpoint_of_another_encoder_is_refused(self, tmp_path, capsys):
        path = self.relabel(tiny_checkpoint(tmp_path), regime="image_text", encoder="project_cnn_grid")
        out = tmp_path / "out"
        refused(capsys, ["interp", "--allow-dirty", "--regime", "image_text", "--checkpoint", str(path), "--kinds",
                         "knockout", "--results-dir", str(out)], "project_cnn_grid", "--encoder")
        assert not out.exists()


class TestOtherInputs:
    """Case 6: model.json holding null, NaN pixels, untracked code."""

    def test_model_json_null_is_one_line_naming_the_file(self, tmp_path, monkeypatch, capsys):
        monkeypatch.setattr(io, "RESULTS_DIR", tmp_path / "results")
        path = tiny_checkpoint(tmp_path)
        (path / "model.json").write_text("null")
        refused(capsys, ["evaluate", "--allow-dirty", "--checkpoint", str(path)], str(path / "model.json"))
        assert not (tmp_path / "results").exists()

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_encoders_refuse_non_finite_pixels(self, value):
        enc = E.get_encoder("pixels", image_size=32, patch=16)
        images = torch.full((1, 3, 32, 32), 0.5)
        images[0, 1, 2, 3] = value
        with pytest.raises(ValueError) as err:
            enc.encode(images)
        assert "pixels" in str(err.value) and "NaN or infinite" in str(err.value) and "\n" not in str(err.value)

    def test_untracked_code_makes_the_tree_dirty(self, tmp_path, monkeypatch):
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
        subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
        (tmp_path / "bindlib").mkdir()
        (tmp_path / "bindlib" / "a.py").write_text("A = 1\n")
        subprocess.run([*git, "-C", str(tmp_path), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "a"], check=True)
        monkeypatch.setattr(io, "REPO_ROOT", tmp_path)
        monkeypatch.setitem(io.RUN, "commit", None)
        monkeypatch.setitem(io.RUN, "diff", None)
        io.begin_run(allow_dirty=False)  # clean
        (tmp_path / "bindlib" / "new.py").write_text("B = 2\n")
        (tmp_path / "notes.txt").write_text("not code\n")
        with pytest.raises(io.DirtyTree, match="untracked"):
            io.begin_run(allow_dirty=False)
        run = io.begin_run(allow_dirty=True)
        assert run["commit"].endswith("-dirty") and "+B = 2" in run["diff"] and "bindlib/new.py" in run["diff"]
        assert io.git_commit().endswith("-dirty")
