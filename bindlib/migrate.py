"""``python -m bindlib migrate``: bring results files and checkpoint metadata up to the current format.

Idempotent, and safe to rerun on files added later (e.g. merged from another branch):

- absolute paths (``"/work/main/data/checkpoints/..."``, in any field, at any depth) become relative
  to the repository root (``bindlib.io.relpath``);
- image checkpoints gain the id and the dimension of their frozen encoder as it is now
  (``encoder_id``, ``encoder_dim``), which loading then checks;
- checkpoints gain ``manifest_sha256`` over everything model.json says (``bindlib.io.manifest_sha256``).

Weights are never touched, so every ``sha256`` and ``checkpoint_sha256`` stays valid.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import io
from .profiles import CHECKPOINTS_DIR, RESULTS_DIR


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
    from .vision.encoders import profile_encoder

    enc = profile_encoder(meta["encoder"], profile=meta.get("profile", "cpu"))
    return {"encoder_id": enc.weights_id, "encoder_dim": enc.dim}


def migrate_checkpoint(meta_file: Path) -> bool:
    meta = json.loads(meta_file.read_text())
    new = relative_paths(meta)
    if new.get("adapter") and new.get("encoder") and "encoder_id" not in new:
        new.update(encoder_fields(new))
    new = io.with_manifest(new)
    if new == meta:
        return False
    io.atomic_write_json(meta_file, new)
    return True


def migrate_results(path: Path) -> bool:
    record = io.read_results(path)
    new = relative_paths(record)
    if new == record:
        return False
    io.atomic_write_json(path, new)
    return True


def migrate(checkpoints_dir=CHECKPOINTS_DIR, results_dir=RESULTS_DIR, log=print) -> list[Path]:
    """Migrate every checkpoint (``*/model.json``) and results file (``*.json``); returns the files changed."""
    changed = [f for f in sorted(Path(checkpoints_dir).glob("*/model.json")) if migrate_checkpoint(f)]
    changed += [f for f in sorted(Path(results_dir).glob("*.json")) if migrate_results(f)]
    log(f"migrated {len(changed)} file(s)" + "".join(f"\n  {io.relpath(f)}" for f in changed))
    return changed
