"""The command line (python -m bindlib): clear errors with exit status 2, and a working evaluate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import bindlib.__main__ as cli
import bindlib.training.train
from bindlib.core import io
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import TaskConfig

REPO = Path(__file__).resolve().parent.parent



@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=TaskConfig().vocab.size, n_layers=1, d_model=16, n_heads=2, d_ff=32))
    return io.save_checkpoint(m, tmp_path / "tiny", dtype=torch.bfloat16,
                              meta={"regime": "text_only", "profile": "cpu", "seed": 0, "train_config": {"task": {}}})


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "no_such_checkpoint"
    assert cli.main(["evaluate", "--allow-dirty", "--checkpoint", str(missing), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "no checkpoint" in err
    assert "Traceback" not in err


def test_evaluate_corrupted_checkpoint(checkpoint, capsys):
    f = checkpoint / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    assert cli.main(["evaluate", "--allow-dirty", "--checkpoint", str(checkpoint), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and str(f) in err


def test_evaluate_writes_a_results_file(checkpoint, tmp_path, capsys):
    results = tmp_path / "results" / "eval_tiny"
    argv = ["evaluate", "--allow-dirty", "--checkpoint", str(checkpoint), "--device", "cpu", "--per-n", "8", "--results", str(results)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[0])
    rec = json.loads(results.with_suffix(".json").read_text())
    assert summary == {"id_accuracy": rec["id_accuracy"], "ood_accuracy": rec["ood_accuracy"]}
    assert rec["kind"] == "evaluation" and rec["regime"] == "text_only" and rec["per_n"] == 8
    assert rec["checkpoint_sha256"] == io.sha256_file(checkpoint / "model.safetensors")
    assert set(rec["accuracy_by_n"]) == {str(n) for n in range(2, 17)}
    assert set(rec["axes"]) == {"shuffled", "declared", "reversed", "offset_8"}
    assert rec["provenance"]["command"].startswith("python -m bindlib evaluate --allow-dirty --checkpoint")


def test_train_cuda_without_gpu_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def must_not_run(*a, **k):
        raise AssertionError("training started although the device is unusable")

    monkeypatch.setattr(bindlib.training.train, "train", must_not_run)
    run_dir, ckpt = tmp_path / "run", tmp_path / "ckpt"
    argv = ["train", "--allow-dirty", "--device", "cuda", "--run-dir", str(run_dir), "--checkpoint", str(ckpt), "--results", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible" in err and "--device cpu" in err
    assert not run_dir.exists() and not ckpt.exists()


def test_train_cuda_without_gpu_subprocess(tmp_path):
    """The real entry point, on a machine where CUDA is hidden: exit status 2, fast, no traceback."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "bindlib", "train", "--allow-dirty", "--device", "cuda", "--run-dir", str(tmp_path / "run"),
                        "--checkpoint", str(tmp_path / "ckpt"), "--results", str(tmp_path / "r")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "no CUDA GPU is visible" in p.stderr and "--device cpu" in p.stderr
    assert "Traceback" not in p.stderr
    assert time.time() - t0 < 60
    assert not (tmp_path / "run").exists()


def test_usage_errors_exit_2_with_one_line(capsys):
    for argv in (["evaluate"], ["train", "--profile", "huge"], ["frobnicate"], [], ["train", "--step", "10"]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "--help" in err, err


def _tiny_recipe(profile="cpu", seed=0, device="cpu", steps_scale=1.0):
    from bindlib.training.train import Stage, TrainConfig

    return TrainConfig(profile="cpu", model=dict(n_layers=1, d_model=16, n_heads=2, d_ff=32), batch_size=8,
                       stages=[Stage("two_hop", 6)], eval_every=3, eval_size=16, warmup=2, seed=seed, device=device)


@pytest.fixture
def tiny_train(tmp_path, monkeypatch):
    """`python -m bindlib train` with the recipe swapped for a tiny one, writing only under tmp_path."""
    import bindlib.core.evaluate
    import bindlib.experiments.recipes

    monkeypatch.setattr(bindlib.experiments.recipes, "recipe", _tiny_recipe)
    real_evaluate = bindlib.core.evaluate.evaluate

    def small_evaluate(*a, per_n=256, **k):  # the same report, from fewer prompts
        return real_evaluate(*a, per_n=min(per_n, 16), **k)

    monkeypatch.setattr(bindlib.core.evaluate, "evaluate", small_evaluate)
    argv = ["train", "--allow-dirty", "--device", "cpu", "--quiet", "--run-dir", str(tmp_path / "run"),
            "--checkpoint", str(tmp_path / "ckpt"), "--results", str(tmp_path / "training")]
    return argv, tmp_path


def test_train_end_to_end(tiny_train, capsys):
    argv, tmp = tiny_train
    assert cli.main(argv) == 0
    rec = json.loads((tmp / "training.json").read_text())
    assert rec["kind"] == "training" and rec["steps"] == 6 and [h["step"] for h in rec["history"]] == [3, 6]
    assert rec["checkpoint_sha256"] == io.sha256_file(tmp / "ckpt" / "model.safetensors")
    assert set(rec["accuracy_by_n"]) == {str(n) for n in range(2, 17)}
    assert rec["provenance"]["command"].startswith("python -m bindlib train --allow-dirty --device cpu")
    model, meta = io.load_checkpoint(tmp / "ckpt", expect={"regime": "text_only", "n_layers": 1})
    assert meta["dtype"] == "bfloat16" and meta["steps"] == 6
    io.load_checkpoint(tmp / "run")  # the resumable state is a valid checkpoint too
    assert json.loads(capsys.readouterr().out.splitlines()[-2])["steps"] == 6


def test_train_twice_resumes(tiny_train, capsys):
    argv, tmp = tiny_train
    assert cli.main(argv) == 0
    first = json.loads((tmp / "training.json").read_text())
    assert cli.main(argv) == 0, capsys.readouterr().err
    second = json.loads((tmp / "training.json").read_text())
    assert second["history"] == first["history"]


def test_train_pos_encoding_ablation_is_its_own_kind(tiny_train):
    argv, tmp = tiny_train
    assert cli.main(argv + ["--pos-encoding", "learned"]) == 0
    rec = json.loads((tmp / "training.json").read_text())
    assert rec["kind"] == "training_variant" and rec["variant"] == "learnedpos" and rec["pos_encoding"] == "learned"
    model, meta = io.load_checkpoint(tmp / "ckpt")
    assert model.cfg.pos_encoding == "learned"


# ---------------------------------------------------------------- settings flags come from the dataclasses
def _action(parser, cmd: str, flag: str):
    sub = next(a for a in parser._actions if a.dest == "cmd").choices[cmd]
    return next(a for a in sub._actions if flag in a.option_strings)


def test_setting_flags_are_built_from_the_dataclass_fields():
    from bindlib.cli import build_parser
    from bindlib.core.model import POS_ENCODINGS
    from bindlib.core.packing import HOP_TARGETS
    from bindlib.core.profiles import TABLE_ENCODERS
    from bindlib.vision.encoders import ENCODERS

    p = build_parser("test")
    for cmd in ("train", "reproduce", "interp"):
        pos, hop = _action(p, cmd, "--pos-encoding"), _action(p, cmd, "--hop-target")
        assert (pos.choices, pos.default, hop.choices, hop.default) == (POS_ENCODINGS, "rope", HOP_TARGETS, "shape")
        assert pos.help.startswith("positional encoding") and hop.help.startswith("what deep supervision asks for")
    for cmd, flag, default in (("reproduce", "--encoders", list(TABLE_ENCODERS)), ("interp", "--encoder", None)):
        enc = _action(p, cmd, flag)
        assert enc.choices == ENCODERS and enc.default == default and enc.help.startswith("the frozen image encoder")
    # the defaults the README's commands rely on are unchanged
    args = p.parse_args(["reproduce"])
    assert (args.pos_encoding, args.hop_target, args.encoders) == ("rope", "shape", list(TABLE_ENCODERS))


def test_a_choice_added_to_a_dataclass_shows_up_in_every_command(monkeypatch):
    """One edit (the field's metadata) and train, reproduce and interp all take the new value."""
    from dataclasses import dataclass, field

    from bindlib import cli as C
    from bindlib.experiments import settings

    @dataclass
    class Widened:
        pos_encoding: str = field(default="rope", metadata={"choices": ("rope", "learned", "none", "alibi"),
                                                            "help": "positional encoding"})

    monkeypatch.setitem(settings.SETTINGS, "pos_encoding", (Widened, "pos_encoding"))
    p = C.build_parser("test")
    for argv in (["train"], ["reproduce"], ["interp", "--regime", "text_only"]):
        assert p.parse_args(argv + ["--pos-encoding", "alibi"]).pos_encoding == "alibi"
    with pytest.raises(C.UsageError, match="invalid choice: 'rotary'"):
        p.parse_args(["interp", "--pos-encoding", "rotary"])


class _Stop(Exception):
    """Raised by the stand-ins below where training (or measuring) would start."""


def test_one_flag_each_reaches_train_reproduce_and_interp(monkeypatch):
    """A non-default positional encoding, hop target and encoder, given as flags and nothing else, reach the
    TrainConfig, the checkpoint names and the interp run; train, reproduce and interp agree on the folders.
    Nothing trains: the stand-ins stop where the work would start."""
    import bindlib.interp.runs
    from bindlib.experiments import recipes
    from bindlib.cli import build_parser

    track = ["--pos-encoding", "learned", "--hop-target", "slot"]
    stage1_name, image_name = "text_only_cpu_s0_learnedpos_hopslot", "image_text_pixels_cpu_s0_learnedpos_hopslot"

    # train: the config and the name of the text checkpoint
    cfg, tag, variant = cli.train_plan(build_parser("t").parse_args(["train", "--seed", "0", *track]))
    assert cfg.model_config().pos_encoding == "learned" and cfg.hop_target == "slot"
    assert cfg.to_dict()["model"] == {"pos_encoding": "learned"} and cfg.to_dict()["hop_target"] == "slot"
    assert (tag, variant) == (stage1_name, "learnedpos_hopslot")

    # reproduce: starts from that checkpoint (made by the same config when missing), trains the image regime
    # with the encoder and names it with the same suffix
    seen = {}

    def fake_stage1(seed, profile, device, progress, pos_encoding, hop_target):
        seen["stage1"] = recipes.stage1_config(seed, profile, str(device), pos_encoding, hop_target)
        return recipes.stage1_dir(seed, profile, pos_encoding, hop_target)

    def fake_train(cfg, out_dir=None, **kw):
        seen.update(cfg=cfg, out_dir=Path(out_dir))
        raise _Stop

    monkeypatch.setattr(recipes, "_stage1", fake_stage1)
    monkeypatch.setattr(recipes, "train", fake_train)
    with pytest.raises(_Stop):
        cli.main(["reproduce", "--regimes", "image_text", "--encoders", "pixels", "--seeds", "0", "--device", "cpu",
                  "--quiet", "--allow-dirty", *track])
    assert seen["stage1"].to_dict() == cfg.to_dict()  # the text checkpoint train would make
    assert seen["cfg"].vision.encoder == "pixels" and seen["cfg"].model_config().pos_encoding == "learned"
    assert seen["cfg"].init_from == f"data/checkpoints/{stage1_name}" and seen["cfg"].hop_target == "slot"
    assert seen["out_dir"].name == image_name  # runs/<checkpoint name>

    # interp: the same flags read the same folders
    measured = []
    monkeypatch.setattr(bindlib.interp.runs, "run_checkpoint",
                        lambda regime, seed, profile, encoder, **kw: measured.append((encoder, Path(kw["checkpoint"]))))
    for regime, encoder in (("text_only", []), ("image_text", ["--encoder", "pixels"])):
        assert cli.main(["interp", "--regime", regime, "--seed", "0", "--allow-dirty", *encoder, *track]) == 0
    assert [(e, p.name) for e, p in measured] == [(None, stage1_name), ("pixels", image_name)]


def test_curve_n_layers_trains_the_deeper_model_and_names_it(tmp_path, monkeypatch):
    # the deeper neutral model: `curve --n-layers 6` trains six blocks and writes curve_<variant>_L6_s<seed>
    # (a test-sized run, --steps below settings.SMOKE_STEPS: under runs/smoke/, here tmp_path)
    import bindlib.experiments.settings

    monkeypatch.setattr(io, "RESULTS_DIR", tmp_path / "data")
    monkeypatch.setattr(bindlib.experiments.settings, "SMOKE_ROOT", tmp_path)
    seen = {}
    real = bindlib.training.train.train

    def spy(cfg, **kw):
        seen["layers"] = cfg.model_config().n_layers
        return real(cfg, **kw)

    monkeypatch.setattr(bindlib.training.train, "train", spy)
    assert cli.main(["curve", "--variant", "direct", "--n-layers", "6", "--steps", "2", "--quiet", "--allow-dirty",
                     "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "results" / "curve_direct_L6_s0.json").read_text())
    assert not (tmp_path / "data").exists()
    assert seen["layers"] == 6 and record["train_config"]["model"] == {"n_layers": 6}
    assert cli.main(["curve", "--variant", "direct", "--n-layers", "0", "--steps", "2", "--allow-dirty"]) == 2


def test_leave_at_turns_stage_budgets_into_ceilings():
    """--leave-at gives every stage but the last the exit threshold (the last keeps its early stop); the run keeps
    its arm's names, and a threshold outside (0, 1] is refused in one line naming the flag."""
    from bindlib.cli import build_parser

    args = ["train", "--seed", "1", "--hop-weight", "0", "--steps-scale", "8"]
    plain, tag0, var0 = cli.train_plan(build_parser("t").parse_args(args))
    cfg, tag, variant = cli.train_plan(build_parser("t").parse_args([*args, "--leave-at", "0.995"]))
    assert (tag, variant) == (tag0, var0) == ("text_only_cpu_s1_steps8x_hopw0", "hopw0")
    assert [s.until for s in cfg.stages] == [0.995] * (len(cfg.stages) - 1) + [None]
    assert all(s.until is None for s in plain.stages) and cfg.total_steps == plain.total_steps
    with pytest.raises(ValueError, match="--leave-at 1.5 .* e.g. --leave-at 0.995"):
        cli.train_plan(build_parser("t").parse_args([*args, "--leave-at", "1.5"]))
