"""Atomic file writes, checkpoints with a verified manifest, results files with provenance, and the
checks every command makes before it starts (a committed tree, writable folders with free space)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .model import ModelConfig, Transformer
from .profiles import CHECKPOINTS_DIR, DATA_DIR, REPO_ROOT, RESULTS_DIR  # noqa: F401 (re-exported)
from . import records as _records
from .records import (ORPHAN_AGE_S, RUN_NAME, ResultsError, check_records, is_run_name,  # noqa: F401 (re-exported)
                      unexpected_results_files)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match what was asked for."""




def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: the directory entry is data too)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_orphans(folder: str | Path, name: str = "", age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Delete temporaries (``.<name>.*.tmp``) that a killed writer left in ``folder``; returns them."""
    now, gone = time.time(), []
    for tmp in Path(folder).glob(f".{name}*.tmp"):
        try:
            if now - tmp.stat().st_mtime > age_s:
                tmp.unlink()
                gone.append(tmp)
        except OSError:
            pass
    return gone


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename, fsync the folder: readers never see
    half a file, and a crash leaves either the old file or the new one (orphans are cleaned up later)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent, path.name)
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
        fsync_dir(path.parent)
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


# ---------------------------------------------------------------- paths, the code's state, and checks before work
def relpath(path: str | Path) -> str:
    """``path`` relative to the repository root, as results and checkpoint metadata record it.

    An absolute path from another checkout (``/content/repo/data/checkpoints/...``) keeps its part
    from ``data/checkpoints``, ``data/results``, ``data/encoders`` or ``runs`` on; any other path
    outside the repository stays as it is.
    """
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        parts = p.parts
        for k in range(len(parts)):
            if parts[k] == "runs" or (parts[k] == "data" and parts[k + 1:k + 2] in (("checkpoints",), ("results",),
                                                                                    ("encoders",))):
                return Path(*parts[k:]).as_posix()
        return p.as_posix()


def _git(*args: str, ok=(0,)) -> str:
    out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    if out.returncode not in ok:
        raise OSError(out.stderr.strip() or f"git {' '.join(args)} failed")
    return out.stdout


# The code a results command runs: set by begin_run, read by provenance and write_results.
RUN: dict = {"commit": None, "diff": None}


def begin_run(allow_dirty: bool = False) -> dict:
    """Pin the code before a results command starts: its commit, and (only with ``allow_dirty``) the
    diff of uncommitted changes, which provenance records by sha256 and write_results stores beside
    each results file. A tree with uncommitted changes (untracked .py files under bindlib/ count) is refused
    otherwise."""
    try:
        commit, diff = _git("rev-parse", "HEAD").strip(), _git("diff", "HEAD", "--binary")
        untracked = untracked_code()  # new modules a run may import: in the diff as git shows an added file
        diff += "".join(_git("diff", "--no-index", "--binary", "--", "/dev/null", f, ok=(0, 1)) for f in untracked)
    except (OSError, subprocess.SubprocessError):
        RUN.update(commit="unknown", diff=None)  # not a git checkout (e.g. an unpacked archive)
        return RUN
    if diff and not allow_dirty:
        changed = len(_git("diff", "HEAD", "--name-only").split()) + len(untracked)
        raise DirtyTree(f"the working tree has uncommitted changes in {changed} file(s) (untracked .py files under "
                        f"bindlib/ count), so the results would not be pinned to a commit: commit or stash them, or "
                        f"pass --allow-dirty (the diff is then stored beside the results).")
    RUN.update(commit=commit + ("-dirty" if diff else ""), diff=diff or None)
    return RUN


def untracked_code() -> list[str]:
    """Untracked (not ignored) .py files under bindlib/: code a command may import, so they make the tree dirty."""
    return [f for f in _git("ls-files", "--others", "--exclude-standard", "--", "bindlib").split() if f.endswith(".py")]


class DirtyTree(RuntimeError):
    """A results command was started from a tree with uncommitted changes."""


def git_commit() -> str:
    if RUN["commit"]:
        return RUN["commit"]
    try:
        return _git("rev-parse", "HEAD").strip() + ("-dirty" if _git("diff", "HEAD", "--name-only").strip()
                                                    or untracked_code() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def is_committed(path: str | Path) -> bool:
    """Whether git tracks ``path`` (a file, or any file under a folder)."""
    try:
        return bool(_git("ls-files", "--", str(Path(path).resolve())).strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return False


def refuse_overwrite(path: str | Path, overwrite: bool = False) -> None:
    """Committed checkpoints and results are overwritten only on purpose (``--overwrite``)."""
    if not overwrite and Path(path).exists() and is_committed(path):
        raise FileExistsError(f"{relpath(path)} is committed; pass --overwrite to replace it, or choose another "
                              f"name (--checkpoint / --results).")


def check_writable(*folders: str | Path, need_mb: float = 200.0) -> None:
    """Fail before any work if a folder cannot be written or its disk has less than ``need_mb`` free."""
    for folder in folders:
        existing = Path(folder).resolve()
        while not existing.exists():
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write to {relpath(folder)}: {relpath(existing)} is read-only for this "
                                  f"user; fix its permissions or write elsewhere.")
        free_mb = shutil.disk_usage(existing).free / 2**20
        if free_mb < need_mb:
            raise OSError(f"only {free_mb:.0f} MB free on the disk of {relpath(folder)} (need {need_mb:.0f} MB); "
                          f"free some space or write elsewhere.")


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
        **({"git_diff_sha256": sha256_bytes(RUN["diff"].encode())} if RUN["diff"] else {}),
        "device": device_name(device),
        "torch": torch.__version__,
        "wall_seconds": round(float(wall_seconds), 2),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} was requested but no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}). Use --device cpu (or auto), or run on a machine with a GPU."
        )
    return torch.device(device)


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
    atomic_write_json(path / "model.json", with_manifest({
        "model_config": model.cfg.to_dict(),
        "weights_file": weights_name,
        "sha256": sha256_bytes(blob),
        "dtype": str(dtype or next(iter(tensors.values())).dtype).replace("torch.", ""),
        **(meta or {}),
    }))
    return path


def manifest_sha256(meta: dict) -> str:
    """The sha256 of everything model.json says (weights sha256, model, task and vision config, encoder id
    and dimension, adapter sha256, ...), so an edit of any of it is caught at load."""
    body = {k: v for k, v in meta.items() if k != "manifest_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def with_manifest(meta: dict) -> dict:
    return {**{k: v for k, v in meta.items() if k != "manifest_sha256"}, "manifest_sha256": manifest_sha256(meta)}


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
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta_file} is not valid JSON ({e}); the checkpoint is corrupt: delete it and retrain.") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_file} holds {json.dumps(meta)[:20]}, not a checkpoint's metadata; restore it "
                              f"with `git checkout -- {meta_file}` or retrain the checkpoint.")
    if "manifest_sha256" not in meta:
        raise CheckpointError(f"{meta_file} has no manifest_sha256, so edits cannot be detected; restore it with "
                              f"`git checkout -- {meta_file}` or retrain (migrate upgrades only unedited older files).")
    if manifest_sha256(meta) != meta["manifest_sha256"]:
        raise CheckpointError(f"{meta_file} was edited after saving (its manifest sha256 does not match); restore it "
                              f"with `git checkout -- {meta_file}` or retrain the checkpoint.")
    return meta


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
    """Write <results_dir>/<name>.json, and beside it <name>.diff when the run came from a dirty tree."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    if RUN["diff"]:
        atomic_write(path.with_suffix(".diff"), RUN["diff"].encode())
        if isinstance(record, dict) and isinstance(record.get("provenance"), dict):
            record["provenance"]["git_diff_file"] = relpath(path.with_suffix(".diff"))
    atomic_write_json(path, record)
    return path


# Every results file read in this process, in order of first reading (``bindlib.book.provenance`` lists a
# chapter's from it).
READ: dict[str, None] = {}


def read_results(path: str | Path, record: bool = True):
    """One results file, parsed and checked (``check_records``); a bad file is an error that names it. ``record=False``
    reads it without adding it to ``READ`` (a survey of the whole folder is not a chapter's source)."""
    path = Path(path)
    text = path.read_text()
    if record:
        READ.setdefault(relpath(path.resolve()), None)
    if not text.strip():
        raise ResultsError(f"results file {relpath(path)} is empty; delete it and rerun the command that writes it.")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"results file {relpath(path)} is truncated or not JSON ({e}); delete it and rerun the "
                           f"command that writes it.") from None
    check_records(obj, relpath(path))
    return obj


def read_records(path: str | Path, record: bool = True) -> list:
    """``read_results`` as a list: a file holds one record or a list of them."""
    recs = read_results(path, record)
    return recs if isinstance(recs, list) else [recs]


def results_files(pattern: str = "*.json", results_dir: str | Path | None = None) -> list[Path]:
    """``records.results_files`` in ``results_dir`` (default data/results): a stray ``x copy.json`` is not a run's."""
    return _records.results_files(pattern, results_dir or RESULTS_DIR)


def dirty_results(results_dir: str | Path | None = None) -> list[dict]:
    """Results files written from a tree with uncommitted changes: {file, git_commit, diff_file} each."""
    out = []
    for f in results_files("*.json", results_dir):
        for r in read_records(f, record=False):
            commit = (r.get("provenance") or {}).get("git_commit", "") if isinstance(r, dict) else ""
            if commit.endswith("-dirty"):
                out.append({"file": relpath(f), "git_commit": commit,
                            "diff_file": r["provenance"].get("git_diff_file")})
                break
    return out


def load_results(pattern: str = "*.json", results_dir: str | Path | None = None, **where) -> list[dict]:
    """All result records in data/results matching a glob and field filters (lists are flattened). Only a file
    that holds a matching record counts as read (``READ``): a chapter's sources are the files it used."""
    out = []
    for f in results_files(pattern, results_dir):  # not the .diff beside a file written with --allow-dirty
        found = [r for r in read_records(f, record=False) if all(r.get(k) == v for k, v in where.items())]
        if found:
            READ.setdefault(relpath(f.resolve()), None)
            out.extend(found)
    return out
