"""Checkpoints (sha256-verified safetensors + JSON) and atomic writes (bindlib.core.io)."""
from __future__ import annotations

import json
import os
import re
import shlex
import time

import pytest
import torch

from bindlib.core import io
from bindlib.core.io import CheckpointError
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import TaskConfig, sample_batch

TASK = TaskConfig()



def tiny_model(seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=TASK.vocab.size, n_layers=2, d_model=32, n_heads=2, d_ff=64, **kw)
    m = Transformer(ModelConfig(**cfg))
    with torch.no_grad():  # large enough weights that rounding to bf16 shows in the logits
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
    return m.eval()


@pytest.fixture(scope="module")
def batch():
    return sample_batch(TASK, 8, seed=0, split="ood")


@pytest.fixture
def saved(tmp_path):
    m = tiny_model()
    path = io.save_checkpoint(m, tmp_path / "ckpt", meta={"regime": "text_only", "seed": 3})
    return m, path


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- checkpoints
def test_round_trip_gives_identical_logits(saved, batch):
    m, path = saved
    assert listing(path) == ["model.json", "model.safetensors"]
    loaded, meta = io.load_checkpoint(path)
    assert not loaded.training
    assert loaded.cfg == m.cfg
    assert meta["regime"] == "text_only" and meta["seed"] == 3 and meta["dtype"] == "float32"
    assert meta["sha256"] == io.sha256_file(path / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(**batch.model_inputs()), m(**batch.model_inputs()))
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_round_trip_keeps_non_default_config(tmp_path, batch):
    m = tiny_model(pos_encoding="learned", max_len=100)
    io.save_checkpoint(m, tmp_path / "c")
    loaded, _ = io.load_checkpoint(tmp_path / "c")
    assert loaded.cfg.pos_encoding == "learned" and loaded.cfg.max_len == 100
    with torch.no_grad():
        assert torch.equal(loaded(**batch.model_inputs()), m(**batch.model_inputs()))


def test_bf16_checkpoint_loads_close(tmp_path, batch):
    from safetensors.torch import load_file

    m = tiny_model()
    path = io.save_checkpoint(m, tmp_path / "bf16", dtype=torch.bfloat16)
    stored = load_file(path / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    loaded, meta = io.load_checkpoint(path)
    assert meta["dtype"] == "bfloat16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        want, got = m(**batch.model_inputs()), loaded(**batch.model_inputs())
    assert not torch.equal(got, want), "bf16 rounding should show"
    scale = want.abs().max().item()
    assert (got - want).abs().max().item() < 0.05 * scale
    assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() > 0.9
    # half the bytes
    assert (path / "model.safetensors").stat().st_size < 0.6 * (
        io.save_checkpoint(m, tmp_path / "fp32") / "model.safetensors").stat().st_size


@pytest.mark.parametrize("where", ["data", "header"])
def test_corrupted_weights_raise_sha256(saved, where):
    _, path = saved
    f = path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[int(len(data) * 0.9) if where == "data" else 20] ^= 0x01  # one bit, in a tensor or in the JSON header
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sha256 mismatch.*model\.safetensors"):
        io.load_checkpoint(path)


def test_missing_checkpoint_folder_has_a_hint(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*nowhere") as e:
        io.load_checkpoint(missing)
    assert "python -m bindlib train" in str(e.value)


def test_missing_checkpoint_hint_is_a_valid_command(tmp_path, monkeypatch):
    import bindlib.__main__ as cli

    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError) as e:
        io.read_checkpoint_meta(missing)
    hint = re.search(r"`(python -m bindlib [^`]*)`", str(e.value)).group(1)
    called = {}
    monkeypatch.setattr(cli, "cmd_train", lambda args, argv: called.setdefault("args", args) and 0)
    monkeypatch.setattr(io, "begin_run", lambda allow_dirty=False: io.RUN)  # the hint, not the tree, is under test
    argv = shlex.split(hint)[3:]  # drop "python -m bindlib"
    try:
        rc = cli.main(argv)
    except SystemExit as exit_:  # argparse rejects an unknown option
        rc = exit_.code
    assert rc == 0, f"the hint {hint!r} does not parse"
    produced = called["args"].checkpoint  # the folder the hinted command writes its checkpoint to
    assert produced is not None and os.path.samefile(os.path.dirname(produced), tmp_path)


def test_missing_weights_file(saved):
    _, path = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        io.load_checkpoint(path)


def test_model_json_not_json(saved):
    _, path = saved
    (path / "model.json").write_text('{"model_config": {"vocab_size": 72,')
    with pytest.raises(CheckpointError, match=r"model\.json is not valid JSON"):
        io.load_checkpoint(path)


def test_expect_mismatch_raises_and_match_loads(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match=r"n_layers=2.*3 was expected"):
        io.load_checkpoint(path, expect={"n_layers": 3})
    with pytest.raises(CheckpointError, match=r"regime='text_only'.*'image' was expected"):
        io.load_checkpoint(path, expect={"regime": "image"})
    model, _ = io.load_checkpoint(path, expect={"n_layers": 2, "d_model": 32, "regime": "text_only"})
    assert model.cfg.n_layers == 2


def test_weights_that_do_not_fit_the_config(saved):
    _, path = saved
    meta = json.loads((path / "model.json").read_text())
    meta["model_config"]["d_ff"] = 128
    (path / "model.json").write_text(json.dumps(io.with_manifest(meta)))  # a consistent manifest, wrong weights
    with pytest.raises(CheckpointError, match=r"do not fit the config"):
        io.load_checkpoint(path)


def test_tied_embeddings_round_trip(tmp_path, batch):
    if "tie_embeddings" not in ModelConfig.__dataclass_fields__:
        pytest.skip("this bindlib has no tie_embeddings option")
    m = tiny_model(tie_embeddings=True)
    assert m.unembed.weight is m.embed.tok.weight
    io.save_checkpoint(m, tmp_path / "tied")
    loaded, _ = io.load_checkpoint(tmp_path / "tied")
    assert loaded.unembed.weight is loaded.embed.tok.weight, "still tied after loading"
    with torch.no_grad():
        assert torch.equal(loaded(**batch.model_inputs()), m(**batch.model_inputs()))


def test_resave_overwrites_cleanly(saved, batch):
    m, path = saved
    m2 = tiny_model(seed=1)
    io.save_checkpoint(m2, path)
    assert listing(path) == ["model.json", "model.safetensors"]
    loaded, _ = io.load_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded(**batch.model_inputs()), m2(**batch.model_inputs()))


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_creates_folders_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "x.bin"
    io.atomic_write(target, b"hello")
    assert target.read_bytes() == b"hello"
    io.atomic_write(target, b"bye")
    assert target.read_bytes() == b"bye"
    assert listing(target.parent) == ["x.bin"]


def _boom(*a, **k):
    raise OSError("simulated failure")


@pytest.mark.parametrize("existing", [None, b"old contents"])
@pytest.mark.parametrize("fail", ["replace", "fsync", "write", "interrupt"])
def test_atomic_write_failure_leaves_nothing_partial(tmp_path, monkeypatch, fail, existing):
    target = tmp_path / "x.json"
    if existing is not None:
        target.write_bytes(existing)
    new = b"0123456789" * 1000
    if fail == "replace":
        monkeypatch.setattr(io.os, "replace", _boom)
    elif fail == "fsync":
        monkeypatch.setattr(io.os, "fsync", _boom)
    else:
        real_fdopen = os.fdopen

        class HalfWriter:  # writes half the data, then fails (or is interrupted)
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                raise KeyboardInterrupt() if fail == "interrupt" else OSError("disk full")

            def __getattr__(self, name):
                return getattr(self.f, name)

        monkeypatch.setattr(io.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt if fail == "interrupt" else OSError):
        io.atomic_write(target, new)
    monkeypatch.undo()
    if existing is None:
        assert listing(tmp_path) == [], "no temp file and no partial target"
    else:
        assert listing(tmp_path) == ["x.json"], "no temp file left behind"
        assert target.read_bytes() == existing, "the old file is untouched"


def test_atomic_write_honours_umask(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    io.atomic_write(tmp_path / "r.json", b"{}")
    with open(tmp_path / "plain", "wb"):
        pass
    want = (tmp_path / "plain").stat().st_mode & 0o777  # what open() gives: 0o666 & ~umask
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == want


def test_atomic_write_json_and_results(tmp_path):
    rec = [{"kind": "training", "seed": 0, "acc": 0.5}, {"kind": "training", "seed": 1, "acc": 0.7}]
    path = io.write_results("run_a", rec, results_dir=tmp_path)
    assert path == tmp_path / "run_a.json"
    io.write_results("run_b", {"kind": "evaluation", "seed": 0}, results_dir=tmp_path)
    assert json.loads(path.read_text()) == rec
    assert len(io.load_results(results_dir=tmp_path)) == 3
    assert [r["acc"] for r in io.load_results(results_dir=tmp_path, kind="training")] == [0.5, 0.7]
    assert io.load_results("run_b*", results_dir=tmp_path, seed=0) == [{"kind": "evaluation", "seed": 0}]
    assert listing(tmp_path) == ["run_a.json", "run_b.json"]


def test_provenance_fields():
    p = io.provenance("python -m bindlib train", "cpu", 12.345, steps=3)
    assert p["command"] == "python -m bindlib train" and p["wall_seconds"] == 12.35 and p["steps"] == 3
    assert p["device"].startswith("cpu") and p["torch"] == torch.__version__
    assert p["git_commit"]


def test_atomic_write_cleans_orphans_of_killed_writers(tmp_path):
    old = tmp_path / ".r.json.abc123.tmp"  # what a writer killed between write and rename leaves
    fresh = tmp_path / ".r.json.def456.tmp"  # another writer, maybe still at work
    for f in (old, fresh):
        f.write_bytes(b"half")
    os.utime(old, (time.time() - 2 * io.ORPHAN_AGE_S,) * 2)
    io.atomic_write(tmp_path / "r.json", b"{}")
    assert not old.exists() and fresh.exists() and (tmp_path / "r.json").read_bytes() == b"{}"


def test_migrate_is_idempotent_and_keeps_weights(tmp_path):
    from bindlib.experiments.migrate import migrate

    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=40, n_layers=1, d_model=16, n_heads=2, d_ff=32))
    ck = io.save_checkpoint(m, tmp_path / "checkpoints" / "x", meta={"init_from": "/elsewhere/repo/data/checkpoints/y"})
    meta = json.loads((ck / "model.json").read_text())
    del meta["manifest_sha256"]  # a checkpoint from before manifests
    (ck / "model.json").write_text(json.dumps(meta))
    res = tmp_path / "results"
    res.mkdir()
    (res / "r.json").write_text(json.dumps({"kind": "training", "checkpoint": "/content/repo/data/checkpoints/x", "n": 1}))
    assert len(migrate(tmp_path / "checkpoints", res, log=lambda *_: None)) == 2
    assert migrate(tmp_path / "checkpoints", res, log=lambda *_: None) == []  # nothing left to do
    _, meta = io.load_checkpoint(ck)
    assert meta["init_from"] == "data/checkpoints/y" and meta["sha256"] == io.sha256_file(ck / "model.safetensors")
    assert json.loads((res / "r.json").read_text()) == {"kind": "training", "checkpoint": "data/checkpoints/x", "n": 1}
