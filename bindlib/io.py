"""Atomic file writes, checkpoints with sha256, and results files with provenance."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .model import ModelConfig, Transformer
from .profiles import CHECKPOINTS_DIR, DATA_DIR, REPO_ROOT, RESULTS_DIR  # noqa: F401 (re-exported)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match what was asked for."""


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; honour the umask like open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_verified(path: str | Path, sha256: str | None, sidecar: str | Path, fix: str) -> bytes:
    """The bytes of ``path`` after checking them against the sha256 its sidecar records (the one hash check).

    ``fix`` says how to get a good file back (e.g. "retrain it"); it ends every error message.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} is missing although {sidecar} names it; restore it with "
                              f"`git checkout -- {path}` or {fix}.")
    blob = path.read_bytes()
    digest = sha256_bytes(blob)
    if digest != sha256:
        raise CheckpointError(f"sha256 mismatch for {path}: expected {sha256}, got {digest}. The file is corrupt or "
                              f"was changed after saving; restore it with `git checkout -- {path}` or {fix}.")
    return blob


# ---------------------------------------------------------------- provenance
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(command: str | None, device, wall_seconds: float, commit: str | None = None, **extra) -> dict:
    """The provenance block of a results file; pass ``commit`` captured when the command started."""
    return {
        "command": command if command is not None else " ".join(["python -m bindlib"] + sys.argv[1:]),
        "git_commit": commit or git_commit(),
        "device": device_name(device),
        "torch": torch.__version__,
        "wall_seconds": round(float(wall_seconds), 2),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(model, path: str | Path, meta: dict | None = None, dtype=None,
                    weights_name: str = "model.safetensors") -> Path:
    """Save ``model`` as <path>/<weights_name> plus <path>/model.json (config, meta, file name, sha256).

    model.json is written last and names the weights file, so whenever it exists it
    describes a complete checkpoint.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    # clone: safetensors refuses tensors that share storage (tied embeddings)
    tensors = {k: v.detach().to("cpu", dtype or v.dtype).clone() for k, v in model.state_dict().items()}
    blob = st_save(tensors)
    atomic_write(path / weights_name, blob)
    atomic_write_json(path / "model.json", {
        "model_config": model.cfg.to_dict(),
        "weights_file": weights_name,
        "sha256": sha256_bytes(blob),
        "dtype": str(dtype or next(iter(tensors.values())).dtype).replace("torch.", ""),
        **(meta or {}),
    })
    return path


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    meta_file = path / "model.json"
    if not meta_file.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: {meta_file.name} is missing. Train one with "
            f"`python -m bindlib train --checkpoint {shlex.quote(str(path))}` or check the path "
            f"(committed ones live in data/checkpoints/)."
        )
    try:
        return json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta_file} is not valid JSON ({e}); the checkpoint is corrupt: delete it and retrain.") from e


def load_checkpoint(path: str | Path, device="cpu", expect: dict | None = None):
    """Load a model saved by save_checkpoint, verifying its sha256 and (optionally) expected config fields."""
    from safetensors.torch import load as st_load

    path = Path(path)
    meta = read_checkpoint_meta(path)
    weights = path / meta.get("weights_file", "model.safetensors")
    blob = read_verified(weights, meta.get("sha256"), path / "model.json", "retrain it")
    for key, want in (expect or {}).items():
        got = meta.get("model_config", {}).get(key, meta.get(key))
        if got != want:
            raise CheckpointError(f"checkpoint {path} has {key}={got!r}, but {want!r} was expected; load the matching checkpoint.")
    model = Transformer(ModelConfig(**meta["model_config"]))
    state = {k: v.float() for k, v in st_load(blob).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {weights} do not fit the config in model.json: {e}") from e
    return model.to(device).eval(), meta


# ---------------------------------------------------------------- results
def write_results(name: str, record, results_dir: str | Path | None = None) -> Path:
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    atomic_write_json(path, record)
    return path


def load_results(pattern: str = "*.json", results_dir: str | Path | None = None, **where) -> list[dict]:
    """All result records in data/results matching a glob and field filters (lists are flattened)."""
    out = []
    for f in sorted(Path(results_dir or RESULTS_DIR).glob(pattern)):
        recs = json.loads(f.read_text())
        for r in recs if isinstance(recs, list) else [recs]:
            if all(r.get(k) == v for k, v in where.items()):
                out.append(r)
    return out
