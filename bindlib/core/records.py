"""What a results file may hold and be named: the checks ``bindlib.core.io.read_results`` makes of every record, and
the names globs over data/results accept (so a stray copy is never read as a run's results)."""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from . import profiles

ORPHAN_AGE_S = 600  # a temporary file this old belongs to a writer that died


class ResultsError(ValueError):
    """A results file is empty, truncated or not a results record."""


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_accuracy_key(key) -> bool:
    return isinstance(key, str) and (key == "accuracy" or key.endswith("_accuracy") or key.startswith("acc_"))


def _bad_field(obj, where: str = ""):
    """(field, value, what it must be) of the first value in ``obj`` no results file may hold, else None:
    an accuracy (``accuracy``, ``*_accuracy``, ``acc_*``, a value of ``*accuracy_by_n``) that is not a finite
    number in 0..1, or a seed that is not a whole number >= 0."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            field = f"{where}.{k}" if where else str(k)
            if _is_accuracy_key(k) and v is not None and not isinstance(v, (dict, list)):
                if not (_is_number(v) and math.isfinite(v) and 0.0 <= v <= 1.0):
                    return field, v, "a finite accuracy in 0..1"
            elif isinstance(k, str) and k.endswith("accuracy_by_n"):
                if not isinstance(v, dict):
                    return field, v, "an object of accuracies by N"
                for n, acc in v.items():
                    if acc is not None and not (_is_number(acc) and math.isfinite(acc) and 0.0 <= acc <= 1.0):
                        return f"{field}.{n}", acc, "a finite accuracy in 0..1"
                continue
            elif k == "seed" and v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                return field, v, "a whole number >= 0"
            bad = _bad_field(v, field)
            if bad:
                return bad
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad = _bad_field(v, f"{where}[{i}]")
            if bad:
                return bad
    return None


def check_records(obj, name: str) -> None:
    """Raise ResultsError (a ValueError) naming the file (``name``) and the field unless ``obj`` is a results record (an
    object with a ``kind``) or a non-empty list of them, with every accuracy a finite number in 0..1 and every
    seed a whole number >= 0."""
    fix = f"restore it with `git checkout -- {name}`, or delete it and rerun the command that writes it."
    recs = obj if isinstance(obj, list) else [obj]
    if not recs:
        raise ResultsError(f"results file {name} is an empty list, not a results record; {fix}")
    for i, rec in enumerate(recs):
        at = f" (record {i})" if isinstance(obj, list) else ""
        if not isinstance(rec, dict):
            shown = "null" if rec is None else type(rec).__name__
            raise ResultsError(f"results file {name}{at} holds {shown}, not a results record (an object with a "
                               f"'kind' field); {fix}")
        if not isinstance(rec.get("kind"), str) or not rec["kind"]:
            raise ResultsError(f"results file {name}{at} has no 'kind' field, so it is not a results record; {fix}")
        bad = _bad_field(rec)
        if bad:
            field, value, must = bad
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ResultsError(f"results file {name}{at} has {field} = {shown}, which must be {must}; "
                               f"{fix}")


# The name of a run's results file (its stem): letters, digits, underscores and hyphens as the commands write them,
# and a dot only inside a number (``_steps0.5x``); no spaces or other dots, and no copies (``x copy.json``,
# ``x (1).json``, ``x_copy.json``, ``x.bak.json``), which globs must not pick up.
RUN_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|(?<=[0-9])\.(?=[0-9]))*")
_COPY = re.compile(r"(^|[_-])copy(\d*|[_-].*)?$", re.IGNORECASE)


def is_run_name(stem: str) -> bool:
    return bool(RUN_NAME.fullmatch(stem)) and not _COPY.search(stem)


def results_files(pattern: str, results_dir: str | Path) -> list[Path]:
    """The results files in ``results_dir`` matching a glob, sorted: only ``.json`` files named like a run
    (``is_run_name``), so a stray copy is never read as a run's results (``bindlib.core.io.results_files``)."""
    return [f for f in sorted(Path(results_dir).glob(pattern))
            if f.suffix == ".json" and f.is_file() and is_run_name(f.stem)]


def unexpected_results_files(results_dir: str | Path | None = None) -> list[Path]:
    """Files (and folders) in ``results_dir`` (default data/results), at any depth, that no command writes: anything
    but ``<run name>.json``, the ``<run name>.diff`` beside one, folders named like a run, and a writer's
    temporary file younger than ``ORPHAN_AGE_S``. Sorted; empty when the folder is clean."""
    root, now, out = Path(results_dir or profiles.RESULTS_DIR), time.time(), []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if any(not is_run_name(part) for part in rel.parts[:-1]):
            continue  # inside an unexpected folder: the folder itself is listed
        if f.is_dir():
            ok = is_run_name(f.name)
        elif f.name.startswith(".") and f.name.endswith(".tmp"):
            ok = now - f.stat().st_mtime <= ORPHAN_AGE_S
        elif f.is_file() and f.suffix == ".json":
            ok = is_run_name(f.stem)
        elif f.is_file() and f.suffix == ".diff":
            ok = is_run_name(f.stem) and f.with_suffix(".json").is_file()
        else:
            ok = False
        if not ok:
            out.append(f)
    return out
