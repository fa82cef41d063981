"""Training (bindlib.training.train): determinism, exact resume after a real kill, the curriculum,
the learning-rate schedule, and bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import bindlib.training.train as T
from bindlib.core import io
from bindlib.core.io import CheckpointError
from bindlib.core.io import resolve_device
from bindlib.training.train import Stage, TrainConfig, lr_at, train

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = dict(n_layers=2, d_model=32, n_heads=2, d_ff=64)



def tiny_cfg(**kw) -> TrainConfig:
    base = dict(profile="cpu", model=dict(TINY_MODEL), batch_size=16, stages=[Stage("two_hop", 30)],
                eval_every=5, eval_size=64, warmup=5, lr=3e-3, early_stop=None, seed=0)
    return TrainConfig(**{**base, **kw})


def json_roundtrip(cfg: TrainConfig) -> TrainConfig:
    """The same config with every tuple turned into a list, as it reads back from model.json.

    Works around the resume bug tested in test_resume_with_default_tuple_fields (the saved config, read
    back from JSON, has lists where to_dict() has tuples, so it never compares equal)."""
    return TrainConfig(**json.loads(json.dumps(cfg.to_dict())))


def quiet_train(cfg, out_dir=None, **kw):
    logs = []
    model, history = train(cfg, out_dir=out_dir, progress=False, log=logs.append, **kw)
    return model, history, logs


def strip_wall(history):
    return [{k: v for k, v in h.items() if k != "wall_seconds"} for h in history]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def resumable_cfg():
    return json_roundtrip(tiny_cfg())


@pytest.fixture(scope="module")
def reference_run(resumable_cfg):
    """One uninterrupted run, without an out_dir."""
    model, history, _ = quiet_train(resumable_cfg)
    return model, history


@pytest.fixture(scope="module")
def finished_dir(tmp_path_factory):
    """A finished short run's folder (copy it before changing it)."""
    cfg = json_roundtrip(tiny_cfg(stages=[Stage("two_hop", 5)]))
    out = tmp_path_factory.mktemp("finished") / "run"
    model, history, _ = quiet_train(cfg, out)
    return cfg, out, model, history


# ---------------------------------------------------------------- determinism
def test_same_seed_same_history_and_weights(resumable_cfg, reference_run):
    model, history, _ = quiet_train(resumable_cfg)
    ref_model, ref_history = reference_run
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    assert strip_wall(history) == strip_wall(ref_history)
    assert_same_weights(model, ref_model)
    assert not model.training


def test_history_records(reference_run, resumable_cfg):
    _, history = reference_run
    for h in history:
        assert {"step", "stage", "loss", "lr", "wall_seconds", "acc_two_hop", "acc_color_to_shape",
                "acc_shape_to_item", "stage_offset"} <= h.keys()
        assert h["lr"] == pytest.approx(lr_at(h["step"] - 1, resumable_cfg))
        assert all(0.0 <= h[f"acc_{k}"] <= 1.0 for k in T.QUERY_KINDS)


# ---------------------------------------------------------------- resume
KILL_SCRIPT = r"""
import json, sys, time, pathlib
import torch
torch.set_num_threads(1)
from torch.optim.optimizer import register_optimizer_step_post_hook
import bindlib.training.train as T

cfg = T.TrainConfig(**json.loads(sys.argv[1]))
out, marker, stop_after = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4])
done = [0]

def hook(opt, args, kwargs):  # after `stop_after` optimiser steps, signal the test and wait to be killed
    done[0] += 1
    if done[0] == stop_after:
        marker.write_text("ready")
        time.sleep(300)

register_optimizer_step_post_hook(hook)
T.train(cfg, out_dir=out, progress=False, log=lambda *a: None)
"""


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, resumable_cfg, reference_run):
    out, marker = tmp_path / "run", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, json.dumps(resumable_cfg.to_dict()), str(out),
                             str(marker), "7"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not marker.exists():  # 7 steps done: the step-5 checkpoint is on disk, steps 5 and 6 are not
            if proc.poll() is not None:
                pytest.fail(f"training subprocess exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail("training subprocess did not reach step 7 within 180 s")
            time.sleep(0.05)
        assert (out / "model.json").exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "model.json").read_text())["step"] == 5
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))

    model, history, logs = quiet_train(resumable_cfg, out)
    assert any("resumed" in line and "step 5" in line for line in logs), logs
    ref_model, ref_history = reference_run
    assert strip_wall(history) == strip_wall(ref_history)
    assert_same_weights(model, ref_model)
    # the folder now holds the finished run, which loads as a plain checkpoint
    saved, meta = io.load_checkpoint(out)
    assert meta["step"] == 30
    assert_same_weights(saved, ref_model)


class SimulatedKill(BaseException):
    pass


def test_resume_after_kill_while_saving(tmp_path, monkeypatch, resumable_cfg, reference_run):
    out = tmp_path / "run"
    real, calls = io.save_checkpoint, []

    def dying(*a, **k):  # the second checkpoint dies after train_state.pt was written
        calls.append(1)
        if len(calls) == 2:
            raise SimulatedKill()
        return real(*a, **k)

    monkeypatch.setattr(io, "save_checkpoint", dying)
    with pytest.raises(SimulatedKill):
        quiet_train(resumable_cfg, out)
    monkeypatch.undo()
    model, history, _ = quiet_train(resumable_cfg, out)  # must resume (from step 5), not refuse
    ref_model, ref_history = reference_run
    assert strip_wall(history) == strip_wall(ref_history)
    assert_same_weights(model, ref_model)


def test_resume_of_finished_run_is_a_no_op(tmp_path, finished_dir):
    cfg, out, model0, history0 = finished_dir
    out = shutil.copytree(out, tmp_path / "run")
    model, history, logs = quiet_train(cfg, out)
    assert strip_wall(history) == strip_wall(history0) and history[-1]["step"] == 5
    assert_same_weights(model, model0)
    assert any("resumed" in line for line in logs)


def test_resume_with_different_config_raises(tmp_path, finished_dir):
    cfg, out, _, _ = finished_dir
    out = shutil.copytree(out, tmp_path / "run")
    other = json_roundtrip(tiny_cfg(stages=[Stage("two_hop", 5)], lr=1e-3))
    with pytest.raises(CheckpointError, match=r"different training config"):
        quiet_train(other, out)
    other_seed = json_roundtrip(tiny_cfg(stages=[Stage("two_hop", 5)], seed=1))
    with pytest.raises(CheckpointError, match=r"different training config"):
        quiet_train(other_seed, out)
    # resume=False ignores the folder and starts over
    model, history, logs = quiet_train(other, out, resume=False)
    assert history[-1]["step"] == 5 and not any("resumed" in line for line in logs)


def test_resume_with_tampered_train_state_raises(tmp_path, finished_dir):
    cfg, out, _, _ = finished_dir
    out = shutil.copytree(out, tmp_path / "run")
    with open(out / json.loads((out / "model.json").read_text())["state_file"], "ab") as f:
        f.write(b"x")
    with pytest.raises(CheckpointError, match=r"sha256 mismatch for .*train_state-\d+\.safetensors"):
        quiet_train(cfg, out)


def test_resume_with_default_tuple_fields(tmp_path):
    cfg = tiny_cfg(stages=[Stage("two_hop", 5, n_range=(2, 8))])  # default betas=(0.9, 0.95), a tuple
    out = tmp_path / "run"
    _, history0, _ = quiet_train(cfg, out)
    _, history, _ = quiet_train(cfg, out)  # the same config object: must resume
    assert strip_wall(history) == strip_wall(history0)


def test_resume_with_log_none(tmp_path, finished_dir):
    cfg, out, _, history0 = finished_dir
    out = shutil.copytree(out, tmp_path / "run")
    _, history = train(cfg, out_dir=out, progress=False, log=None)
    assert strip_wall(history) == strip_wall(history0)


# ---------------------------------------------------------------- curriculum
def test_curriculum_until_leaves_a_stage_early(monkeypatch):
    cfg = tiny_cfg(stages=[
        Stage("a", 10, {"color_to_shape": 1.0}, until=1.5),  # never reached: runs its full 10 steps
        Stage("b", 10, {"shape_to_item": 1.0}, until=0.0),  # reached at its first evaluation (step 15)
        Stage("c", 10, {"two_hop": 1.0}),
    ])
    kinds, in_eval = [], [False]
    real_sample, real_quick = T.sample_batch, T.quick_accuracy

    def sample(*a, **k):
        if not in_eval[0]:
            kinds.append(k.get("query_kind", "two_hop"))
        return real_sample(*a, **k)

    def quick(*a, **k):
        in_eval[0] = True
        try:
            return real_quick(*a, **k)
        finally:
            in_eval[0] = False

    monkeypatch.setattr(T, "sample_batch", sample)
    monkeypatch.setattr(T, "quick_accuracy", quick)
    _, history, _ = quiet_train(cfg)
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    assert [h["stage"] for h in history] == ["a", "a", "b", "c", "c", "c"]
    assert [h["stage_offset"] for h in history] == [0, 0, 5, 5, 5, 5]
    # the mix of the stage in force is what is trained on, one sampled batch per step
    assert kinds == ["color_to_shape"] * 10 + ["shape_to_item"] * 5 + ["two_hop"] * 15


def test_early_stop_only_in_last_stage():
    cfg = tiny_cfg(stages=[Stage("a", 10), Stage("b", 20)], early_stop=0.0)
    _, history, _ = quiet_train(cfg)
    assert [h["step"] for h in history] == [5, 10, 15]
    assert [h["stage"] for h in history] == ["a", "a", "b"]
    assert history[-1]["stopped"] == "early_stop" and "stopped" not in history[0]


def test_stage_at_walks_the_stages():
    cfg = tiny_cfg(stages=[Stage("a", 3), Stage("b", 2)])
    names = [T.stage_at(s, cfg)[1].name for s in range(7)]
    assert names == ["a", "a", "a", "b", "b", "b", "b"]  # past the end: the last stage
    assert cfg.total_steps == 5


def test_training_batch_is_deterministic_and_follows_the_mix():
    cfg = tiny_cfg(batch_size=30)
    task = cfg.task_config()
    stage = Stage("mix", 10, {"two_hop": 2.0, "color_to_shape": 1.0, "shape_to_item": 0.0}, n_range=(3, 4))
    a = T.training_batch(cfg, task, stage, 7, "cpu")
    b = T.training_batch(cfg, task, stage, 7, "cpu")
    c = T.training_batch(cfg, task, stage, 8, "cpu")
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    assert a.query_kind.count("two_hop") == 20 and a.query_kind.count("color_to_shape") == 10
    assert len(a) == 30 and set(a.n_objects.tolist()) <= {3, 4}


# ---------------------------------------------------------------- learning rate
def test_lr_warmup_then_cosine_to_min():
    cfg = tiny_cfg(stages=[Stage("a", 60), Stage("b", 40)], warmup=10, lr=1e-3, min_lr_frac=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.total_steps + 1)]
    warm, decay = lrs[:10], lrs[10:]
    assert all(x < y for x, y in zip(warm, warm[1:])), "increases during warmup"
    assert lrs[0] > 0 and lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)
    assert all(x >= y for x, y in zip(decay, decay[1:])), "decreases after warmup"
    assert lrs[-1] == pytest.approx(0.1 * 1e-3)
    assert min(lrs[10:]) >= 0.1 * 1e-3 - 1e-12 and max(lrs) <= 1e-3 + 1e-12
    mid = 10 + (cfg.total_steps - 10) // 2
    assert lrs[mid] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-6), "cosine: halfway at the midpoint"
    assert lr_at(cfg.total_steps + 50, cfg) == pytest.approx(1e-4), "stays at the floor after the end"


# ---------------------------------------------------------------- bad input
def test_unknown_profile():
    with pytest.raises(ValueError, match=r"unknown profile 'gpu'.*cpu.*paper"):
        tiny_cfg(profile="gpu")


def test_stage_with_zero_steps():
    with pytest.raises(ValueError, match=r"stage 'warm': steps=0 must be >= 1"):
        Stage("warm", 0)
    with pytest.raises(ValueError, match=r"steps=0 must be >= 1"):
        tiny_cfg(stages=[{"name": "warm", "steps": 0}])


def test_stage_with_unknown_query_kind():
    with pytest.raises(ValueError, match=r"unknown query kinds \['three_hop'\].*two_hop"):
        Stage("s", 10, {"two_hop": 1.0, "three_hop": 1.0})


def test_stage_with_bad_weights():
    with pytest.raises(ValueError, match=r"mix weights must be >= 0 with a positive sum"):
        Stage("s", 10, {"two_hop": 0.0})


def test_bad_task_in_train_config():
    with pytest.raises(ValueError, match=r"n_colors=500 is outside"):
        tiny_cfg(task={"n_colors": 500})


def test_bad_batch_size_and_lr():
    with pytest.raises(ValueError, match=r"batch_size \(0\) must be >= 1"):
        tiny_cfg(batch_size=0)
    with pytest.raises(ValueError, match=r"lr \(0\.0\) > 0"):
        tiny_cfg(lr=0.0)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    with pytest.raises(RuntimeError, match=r"no CUDA GPU is visible.*--device cpu"):
        resolve_device(device)


def test_resolve_device_cpu_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_typed_configs_round_trip_committed_train_configs():
    """TrainConfig holds a TaskConfig and a VisionConfig, and writes exactly the JSON committed checkpoints hold."""
    from bindlib.core.task import TaskConfig
    from bindlib.core.relayout import VisionConfig

    from bindlib.core.model import ModelOverrides

    for name in ("text_only_cpu_s0_learnedpos", "image_text_project_cnn_cpu_s0", "noise_text_cpu_s1"):
        saved = io.read_checkpoint_meta(io.CHECKPOINTS_DIR / name)["train_config"]
        assert T.TrainConfig(**saved).to_dict() == saved  # exactly: resume and the manifests compare it
    # every committed config loads with the same settings. Files written before later fields existed hold fewer
    # keys (no "vision"; Stage fields then new), so only what a file holds is compared.
    saved_configs = [io.read_checkpoint_meta(p.parent)["train_config"] for p in io.CHECKPOINTS_DIR.glob("*/model.json")]
    saved_configs += [r["train_config"] for r in io.load_results("*.json") if r.get("train_config")]
    assert len(saved_configs) > 50 and any(c["model"] for c in saved_configs)  # pos ablations too
    for saved in saved_configs:
        cfg = T.TrainConfig(**saved)
        assert isinstance(cfg.task, TaskConfig) and isinstance(cfg.vision, VisionConfig)
        assert isinstance(cfg.model, ModelOverrides)
        assert cfg.model_config().pos_encoding == saved["model"].get("pos_encoding", "rope")
        written = cfg.to_dict()
        assert {k: written[k] for k in saved if k != "stages"} == {k: v for k, v in saved.items() if k != "stages"}
        assert written["vision"] == saved.get("vision", {})
        for w, s in zip(written["stages"], saved["stages"], strict=True):
            assert {k: w[k] for k in s if k in w} == {k: v for k, v in s.items() if k in w}
    with pytest.raises(ValueError, match="unknown encoder 'nope'"):
        T.TrainConfig(vision={"encoder": "nope"})
    # a typo'd key is one clear line naming it and the allowed settings, in each typed part
    for part, cls in (("model", "ModelOverrides"), ("task", "TaskConfig"), ("vision", "VisionConfig")):
        with pytest.raises(ValueError, match=rf"unknown {cls} setting\(s\) \['pos_encodng'\]: allowed \["):
            T.TrainConfig(**{part: {"pos_encodng": "learned"}})
    with pytest.raises(ValueError, match="unknown pos_encoding 'alibi'"):
        T.TrainConfig(model={"pos_encoding": "alibi"})


def test_model_overrides_name_only_model_config_fields():
    """Every override is a ModelConfig field (bar those the task sets), and None keeps the profile's value."""
    from dataclasses import fields

    from bindlib.core.model import ModelOverrides

    assert {f.name for f in fields(ModelOverrides)} == {f.name for f in fields(T.ModelConfig)} - {"vocab_size", "max_len"}
    cfg = T.TrainConfig(model=ModelOverrides(n_layers=2))
    assert cfg.model_config().n_layers == 2 and cfg.model_config().d_model == T.PROFILES["cpu"]["d_model"]
    learned = cfg.model.replace(pos_encoding="learned")
    assert learned.to_dict() == {"n_layers": 2, "pos_encoding": "learned"} and cfg.model.to_dict() == {"n_layers": 2}


def test_the_shortcut_dial_logs_and_stops_on_its_training_distribution(monkeypatch):
    """At declared share p > 0 the ID accuracy that decides early stopping is measured on prompts drawn like
    the training prompts (acc_train_two_hop); acc_two_hop stays the shuffled-order one."""
    seen = []

    def fake(model, task, kind, size, seed, device, n_range=None, declared_share=0.0):
        seen.append(declared_share)
        return 1.0 if declared_share > 0 else 0.25

    monkeypatch.setattr(T, "quick_accuracy", fake)
    _, history, _ = quiet_train(tiny_cfg(declared_share=1.0, stages=[Stage("two_hop", 6)], eval_every=2, early_stop=0.99))
    assert history[0]["acc_train_two_hop"] == 1.0 and history[0]["acc_two_hop"] == 0.25
    assert history[-1]["stopped"] == "early_stop" and history[-1]["step"] == 2 and 1.0 in seen
    _, plain, _ = quiet_train(tiny_cfg(stages=[Stage("two_hop", 4)], eval_every=2, early_stop=0.99))
    assert "acc_train_two_hop" not in plain[-1] and "stopped" not in plain[-1]


def test_noise_stages_log_the_noised_task_too():
    _, history, _ = quiet_train(tiny_cfg(stages=[Stage("noise", 4, noise=True)], eval_every=2))
    assert 0.0 <= history[-1]["acc_noise_two_hop"] <= 1.0
    _, plain, _ = quiet_train(tiny_cfg(stages=[Stage("two_hop", 2)], eval_every=2))
    assert "acc_noise_two_hop" not in plain[-1]


def test_progress_records_a_run_so_far_and_refuses_an_edited_one(tmp_path, finished_dir):
    from bindlib.training.state import progress_record

    cfg, out, _, history = finished_dir
    out = shutil.copytree(out, tmp_path / "run")
    rec = progress_record(out, "curve_direct_s9", "python -m bindlib progress ...", commit="abc", variant="direct")
    assert rec["kind"] == "training_progress" and rec["of"] == "curve_direct_s9" and rec["variant"] == "direct"
    assert rec["step"] == 5 and rec["budget"] == 5 and rec["seed"] == cfg.seed
    assert strip_wall(rec["history"]) == strip_wall(history) and rec["provenance"]["git_commit"] == "abc"
    meta = json.loads((out / "model.json").read_text())
    meta["step"] = 4
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(io.CheckpointError, match="edited after saving"):
        progress_record(out, "curve_direct_s9", "cmd")


def test_progress_from_a_log_rebuilds_the_config_from_the_run_command(tmp_path):
    """A run whose folder is gone goes on record from its --quiet log: the history is the log's step lines, the
    config is what the run's own command line builds (depth and budget included), the commit is the run's."""
    from bindlib.cli import build_parser
    from bindlib.experiments.plans import command_config
    from bindlib.training.state import log_progress_record

    lines = ["resumed from runs/x at step 0"] + [json.dumps({"step": s, "stage": "two_hop", "acc_two_hop": 0.25,
                                                            "wall_seconds": s / 10}) for s in (100, 200, 300)]
    log = tmp_path / "run.log"
    log.write_text("\n".join(lines) + "\n")
    run = "python -m bindlib curve --variant direct --n-layers 6 --steps 400 --seed 3 --threads 1 --quiet"
    rec = log_progress_record(log, "curve_direct_L6_s3", *command_config(run, build_parser), run, "abc1234",
                              "python -m bindlib progress ...", "direct")
    assert rec["kind"] == "training_progress" and rec["of"] == "curve_direct_L6_s3" and rec["run_dir"] is None
    assert [h["step"] for h in rec["history"]] == [100, 200, 300] and rec["step"] == 300 and rec["budget"] == 400
    assert rec["model_config"]["n_layers"] == 6 and rec["seed"] == 3 and rec["train_config"]["packed"] is False
    assert rec["provenance"]["git_commit"] == "abc1234" and rec["provenance"]["run_command"] == run
    assert rec["provenance"]["wall_seconds"] == 30.0
    with pytest.raises(ValueError, match="not a train or curve command"):
        command_config("python -m bindlib interp --seed 0", build_parser)
    log.write_text("\n".join(lines[:1] + lines[2:] + lines[1:2]) + "\n")  # steps 200, 300, 100: two runs mixed
    with pytest.raises(ValueError, match="no increasing run of step records"):
        log_progress_record(log, "x", *command_config(run, build_parser), run, "abc", "cmd")


def test_progress_command_wants_one_source():
    r = subprocess.run([sys.executable, "-m", "bindlib", "progress", "--results", "x", "--log", "a.log", "--allow-dirty"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--log FILE with --run-command and --run-commit" in r.stderr


def test_the_deep_profile_is_the_papers_depth_and_vocabulary_with_the_cpu_recipe():
    """`train --profile deep`: 12 blocks of width 128, 216 colours and shapes from the first step, deep supervision
    at block 5 (the end of the first half, as block 1 of 4 is for the cpu profile), stage budgets as ceilings."""
    from bindlib.cli import build_parser
    from bindlib.experiments.plans import train_plan
    from bindlib.experiments.recipes import recipe

    cfg = recipe("deep")
    m, t = cfg.model_config(), cfg.task_config()
    assert (m.n_layers, m.d_model, m.n_heads, m.d_ff) == (12, 128, 4, 512)
    assert (t.n_colors, t.n_shapes, t.n_items, t.id_range) == (216, 216, 32, (2, 8))
    assert cfg.hop_layer == 5 and cfg.batch_size == recipe("cpu").batch_size
    assert [s.until for s in cfg.stages] == [0.995, 0.995, 0.995, None]
    assert [s.steps for s in cfg.stages] == [2 * s.steps for s in recipe("cpu").stages]
    plan, tag, variant = train_plan(build_parser("t").parse_args(["train", "--profile", "deep", "--seed", "2"]))
    assert tag == "text_only_deep_s2" and variant is None and plan.task_config().n_colors == 216


def test_the_cpu216_profile_is_the_deep_profile_at_the_cpu_depth():
    """`train --profile cpu216`: the control for depth, the cpu profile's 4 blocks with the deep profile's vocabulary,
    stage budgets and ceilings; deep supervision at block 1, the end of the first half as in the cpu recipe."""
    from bindlib.cli import build_parser
    from bindlib.experiments.plans import train_plan
    from bindlib.experiments.recipes import recipe

    cfg, deep = recipe("cpu216"), recipe("deep")
    m, t = cfg.model_config(), cfg.task_config()
    assert (m.n_layers, m.d_model, m.n_heads, m.d_ff) == (4, 128, 4, 512)
    assert t == deep.task_config() and cfg.hop_layer == recipe("cpu").hop_layer
    assert [(s.steps, s.until) for s in cfg.stages] == [(s.steps, s.until) for s in deep.stages]
    plan, tag, variant = train_plan(build_parser("t").parse_args(["train", "--profile", "cpu216", "--seed", "0"]))
    assert tag == "text_only_cpu216_s0" and variant is None and plan.task_config().n_colors == 216


TEXT_ONLY_SCRIPT = """
import sys
from bindlib.training.train import Stage, TrainConfig, train

cfg = TrainConfig(model=dict(n_layers=1, d_model=16, n_heads=2, d_ff=32), batch_size=4, warmup=1, eval_every=2,
                  eval_size=8, early_stop=None, stages=[Stage("noised", 2, noise=0.5)])
model, history = train(cfg, progress=False, log=None)
assert history[-1]["step"] == 2, history
print(sorted(m for m in sys.modules if m.startswith("bindlib.vision")))
"""


def test_text_training_imports_no_vision_module(tmp_path):
    """Text training, noise steps included, runs without importing anything of bindlib.vision."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", TEXT_ONLY_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]", p.stdout
