"""The named runs: each registered experiment declared once, as data (a typed config whose name it computes).

    python -m bindlib run --list
    python -m bindlib run position_shift_text_only_cpu_s0 --out-root runs/named

A run's name, its checkpoint and its results file are computed from its config here, and nowhere else; no
setting is read back out of a name. A named run writes ``<out-root>/results/<name>.json`` and never into data/,
so a rerun stands beside the committed file it reproduces (``records_match`` compares the two).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core import io
from ..core.evaluate import SHIFTS, evaluate_shift
from ..core.profiles import (DATA_DIR, DEFAULT_POS_ENCODING, POS_ENCODINGS, SEEDS, check_pos_encoding, check_profile,
                             checkpoint_dir, pos_suffix)
from ..core.task import TaskConfig

DEFAULT_OUT_ROOT = Path("runs") / "named"


def position_shift_record(checkpoint: str | Path, shifts, per_n: int, device, command: str, commit: str | None) -> dict:
    """The position-shift record of one checkpoint (``evaluate --shift`` and the named runs write this)."""
    t0 = time.time()
    model, meta = io.load_checkpoint(checkpoint, device=device)
    task = TaskConfig(**meta.get("train_config", {}).get("task", {}))
    head = {"regime": meta.get("regime", "unknown"), "profile": meta.get("profile", "unknown"), "seed": meta.get("seed")}
    body = {"pos_encoding": model.cfg.pos_encoding,
            **evaluate_shift(model, task, shifts=sorted({0, *shifts}), per_n=per_n, device=device)}
    return {"kind": "position_shift", **head, **body, "checkpoint": io.relpath(checkpoint),
            "checkpoint_sha256": meta["sha256"], "provenance": io.provenance(command, device, time.time() - t0, commit=commit)}


@dataclass(frozen=True)
class PositionShift:
    """ID accuracy with every position id moved up by k (chapter 4's test of learned positions), measured on the
    committed text checkpoint of one seed and one position encoding."""

    seed: int
    pos_encoding: str = DEFAULT_POS_ENCODING
    profile: str = "cpu"
    shifts: tuple[int, ...] = SHIFTS
    per_n: int = 256

    def __post_init__(self):
        check_pos_encoding(self.pos_encoding)
        check_profile(self.profile)
        if self.seed < 0 or self.per_n < 1 or any(k < 0 for k in self.shifts):
            raise ValueError(f"seed {self.seed} and shifts {self.shifts} must be >= 0, per_n {self.per_n} >= 1.")

    @property
    def checkpoint(self) -> Path:
        base = checkpoint_dir("text_only", self.seed, self.profile)
        return base.with_name(base.name + pos_suffix(self.pos_encoding))

    @property
    def name(self) -> str:
        return f"position_shift_{self.checkpoint.name}"

    def record(self, device, command: str, commit: str | None) -> dict:
        return position_shift_record(self.checkpoint, self.shifts, self.per_n, device, command, commit)


RUNS = {run.name: run for run in (PositionShift(seed, pos) for pos in POS_ENCODINGS[:2] for seed in SEEDS)}


def get(name: str):
    if name not in RUNS:
        raise ValueError(f"unknown run {name!r}: `python -m bindlib run --list` lists the {len(RUNS)} named runs.")
    return RUNS[name]


def output_path(name: str, out_root: str | Path = DEFAULT_OUT_ROOT) -> Path:
    """Where a named run writes: <out-root>/results/<name>.json, never under data/."""
    root = Path(out_root).resolve()
    if root == DATA_DIR.resolve() or DATA_DIR.resolve() in root.parents:
        raise ValueError(f"--out-root {out_root} lies in {io.relpath(DATA_DIR)}/; a named run writes beside the "
                         f"committed files, never over them: choose a folder outside it (default {DEFAULT_OUT_ROOT}).")
    return root / "results" / f"{get(name).name}.json"


def run(name: str, out_root: str | Path, device, command: str, commit: str | None, overwrite: bool = False) -> Path:
    """Run one named experiment and write its results file; return the file's path."""
    path = output_path(name, out_root)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{io.relpath(path)} exists; pass --overwrite to replace it, or choose another --out-root.")
    io.check_writable(path.parent)
    return io.write_results(path.stem, get(name).record(device, command, commit), path.parent)


def records_match(a: dict, b: dict) -> bool:
    """Whether two records hold the same numbers and names (everything but their provenance)."""
    return {k: v for k, v in a.items() if k != "provenance"} == {k: v for k, v in b.items() if k != "provenance"}


def cmd_run(args, command: str, device) -> int:
    if args.list or not args.name:
        for name, r in RUNS.items():
            print(f"{name}  ({type(r).__name__}: {io.relpath(r.checkpoint)})")
        return 0
    path = run(args.name, args.out_root, device, command, io.git_commit(), args.overwrite)
    committed = io.RESULTS_DIR / path.name
    if committed.exists():
        same = records_match(io.read_results(path, record=False), io.read_results(committed, record=False))
        print(f"{'same numbers as' if same else 'differs from'} {io.relpath(committed)}")
    print(f"wrote {io.relpath(path)}")
    return 0


def add_command(sub) -> None:
    """Register ``run``; its parser's ``handler`` runs it."""
    r = sub.add_parser("run", help="run one named experiment (bindlib.experiments.registry); --list lists them")
    r.add_argument("name", nargs="?", help="the run's name (see --list)")
    r.add_argument("--list", action="store_true", help="list the named runs and exit")
    r.add_argument("--out-root", default=str(DEFAULT_OUT_ROOT),
                   help=f"write <out-root>/results/<name>.json (default {DEFAULT_OUT_ROOT}; never under data/)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    r.set_defaults(handler=cmd_run)
