"""``python -m bindlib migrate``: bring results files and checkpoint metadata up to the current format.

Idempotent, and safe to rerun on files added later (e.g. merged from another branch):

- absolute paths (``"/work/main/data/checkpoints/..."``, in any field, at any depth) become relative
  to the repository root (``bindlib.core.io.relpath``);
- image checkpoints gain the id and the dimension of their frozen encoder as it is now
  (``encoder_id``, ``encoder_dim``), which loading then checks;
- checkpoints gain ``manifest_sha256`` over everything model.json says (``bindlib.core.io.manifest_sha256``).

Weights are never touched, so every ``sha256`` and ``checkpoint_sha256`` stays valid.

It upgrades files written by older code and never blesses an edit: before writing anything it checks every
checkpoint's weights against the sha256 its model.json records, refuses a model.json whose manifest no longer
matches (or whose committed version had one that is gone), and refuses to rewrite a committed file without
``overwrite`` (``--overwrite``). The command runs from a committed tree like every writing command
(``--allow-dirty``).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..core import io
from ..core.profiles import CHECKPOINTS_DIR, RESULTS_DIR


def relative_paths(obj):
    """``obj`` with every absolute path string made repository-relative (other values unchanged)."""
    if isinstance(obj, dict):
        return {k: relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relative_paths(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/") and " " not in obj:
        return io.relpath(obj)
    return obj


def encoder_fields(meta: dict) -> dict:
    """encoder_id and encoder_dim of an image checkpoint's encoder, as the encoder is now."""
    from ..vision.encoders import profile_encoder

    enc = profile_encoder(meta["encoder"], profile=meta.get("profile", "cpu"))
    return {"encoder_id": enc.weights_id, "encoder_dim": enc.dim}


def _committed_manifest(meta_file: Path) -> bool:
    """Whether the committed version (HEAD) of ``meta_file`` has a manifest_sha256."""
    try:
        text = io._git("show", f"HEAD:{io.relpath(meta_file.resolve())}")
    except (OSError, ValueError, subprocess.SubprocessError):
        return False  # not committed, or not in this repository
    try:
        return "manifest_sha256" in json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False


def checkpoint_update(meta_file: Path) -> dict | None:
    """model.json as the current format has it, or None when it already is; a CheckpointError (nothing written)
    for a file that older code did not write as it is: not a JSON object, edited after its manifest, weights that
    no longer match their sha256."""
    restore = f"restore the checkpoint with `git checkout -- {meta_file.parent}` or retrain it"
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise io.CheckpointError(f"{meta_file} is not valid JSON ({e}); {restore}.") from None
    if not isinstance(meta, dict):
        raise io.CheckpointError(f"{meta_file} holds {json.dumps(meta)[:20]}, not a checkpoint's metadata; {restore}.")
    if "manifest_sha256" in meta and io.manifest_sha256(meta) != meta["manifest_sha256"]:
        raise io.CheckpointError(f"{meta_file} was edited after saving (its manifest sha256 does not match), and "
                                 f"migrate does not sign edits; {restore}.")
    if "manifest_sha256" not in meta and _committed_manifest(meta_file):
        raise io.CheckpointError(f"{meta_file} lost the manifest_sha256 its committed version has (an edit, not "
                                 f"older code), and migrate does not sign edits; {restore}.")
    weights = meta_file.parent / str(meta.get("weights_file", "model.safetensors"))
    if not meta.get("sha256"):
        raise io.CheckpointError(f"{meta_file} records no sha256 of its weights, so migrate cannot check them; "
                                 f"{restore}.")
    if not weights.is_file():
        raise io.CheckpointError(f"{weights} is missing although {meta_file} names it; {restore}.")
    digest = io.sha256_file(weights)
    if digest != meta["sha256"]:
        raise io.CheckpointError(f"sha256 mismatch for {weights}: {meta_file} records {meta['sha256']}, the file has "
                                 f"{digest}; migrate does not sign changed weights; {restore}.")
    new = relative_paths(meta)
    if new.get("adapter") and new.get("encoder") and "encoder_id" not in new:
        new.update(encoder_fields(new))
    new = io.with_manifest(new)
    return None if new == meta else new


def results_update(path: Path):
    """A results record with repository-relative paths, or None when it has them already."""
    record = io.read_results(path, record=False)
    new = relative_paths(record)
    return None if new == record else new


def migrate(checkpoints_dir=CHECKPOINTS_DIR, results_dir=RESULTS_DIR, log=print, overwrite: bool = False) -> list[Path]:
    """Migrate every checkpoint (``*/model.json``) and results file (``*.json``); returns the files changed.
    Every file is checked before any is written, so a refusal leaves everything as it was."""
    plan = [(f, checkpoint_update(f)) for f in sorted(Path(checkpoints_dir).glob("*/model.json"))]
    plan += [(f, results_update(f)) for f in io.results_files("*.json", results_dir)]
    plan = [(f, new) for f, new in plan if new is not None]
    committed = [f for f, _ in plan if io.is_committed(f)]
    if committed and not overwrite:
        raise FileExistsError(f"migrate would rewrite {len(committed)} committed file(s) ({io.relpath(committed[0])}"
                              f"{', ...' if len(committed) > 1 else ''}); pass --overwrite to let it (nothing was "
                              f"written).")
    for f, new in plan:
        io.atomic_write_json(f, new)
    changed = [f for f, _ in plan]
    log(f"migrated {len(changed)} file(s)" + "".join(f"\n  {io.relpath(f)}" for f in changed))
    return changed
