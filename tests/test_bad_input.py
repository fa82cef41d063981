"""Bad input, one class per case: each fails at once with exactly one clear line naming the problem and the fix.

Every case builds its input, triggers the failure and compares the whole message (paths and digests
that depend on the temporary folder are computed, the rest is literal).
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from bindlib import io
from bindlib.__main__ import main
from bindlib.model import ModelConfig, Transformer
from bindlib.task import TaskConfig, sample_batch
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
