"""Where a chapter's numbers come from: the results files it read, and whether their commits pin the code.

    counts()                chapter's end: the numbers its note glues (files, commands, commits, dirty)
    sources_sentence()      chapter's end: how many files, how many commands, and which were written dirty
    sources_table()         one row per file: the command that wrote it, its commit, device and wall time
    repository_sentence()   chapter 9: the same question asked of every file in data/results

Both chapter functions list the files read in this kernel so far (``bindlib.core.io.READ``, filled by
``io.read_results``), so the last cells of a chapter show exactly the files its numbers came from. A file
written from a tree with uncommitted changes carries the commit ``<sha>-dirty``: that commit says where the
code stood, not what it was. Results commands refuse such a tree unless given ``--allow-dirty``, and then
store the diff beside the results file; the files marked here predate that refusal.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..core import io
from .findings import Table
from .text import Prose, breakable


def _provenances(path: Path) -> list[dict]:
    return [r["provenance"] for r in io.read_records(path) if isinstance(r, dict) and isinstance(r.get("provenance"), dict)]


def sources(read=None) -> list[dict]:
    """One dict per results file in ``read`` (default: every file read in this kernel, in order): file,
    command, commits, dirty (None without provenance), git_diff_file, device, wall_seconds, records."""
    rows = []
    for rel in list(io.READ if read is None else read):
        path = io.REPO_ROOT / rel
        provs = _provenances(path)
        commits = sorted({p.get("git_commit") or "" for p in provs})
        rows.append({"file": path.name, "command": provs[0].get("command") if provs else None,
                     "commits": [c.removesuffix("-dirty") for c in commits if c],
                     "dirty": any(c.endswith("-dirty") for c in commits) if provs else None,
                     "git_diff_file": next((p["git_diff_file"] for p in provs if p.get("git_diff_file")), None),
                     "device": provs[0].get("device") if provs else None,
                     "wall_seconds": sum(p.get("wall_seconds") or 0.0 for p in provs), "records": len(provs)})
    return rows


def counts(read=None) -> dict[str, int]:
    """The numbers behind a chapter's provenance note: results files read, distinct commands and commits that
    wrote them, how many were written from a tree with uncommitted changes, and how many carry no provenance."""
    rows = sources(read)
    return {"files": len(rows), "commands": len({r["command"] for r in rows if r["command"]}),
            "commits": len({c for r in rows for c in r["commits"]}), "dirty": sum(r["dirty"] is True for r in rows),
            "bare": sum(r["dirty"] is None for r in rows)}


COMMAND_CHARS = 160  # sources_table(cut=True) cuts a longer command (the results file keeps the whole of it)
CELL_CHARS = 300  # no table cell is longer, cut or not


def _command(cmd: str | None, cut: bool = False) -> str:
    """The command without ``python -m bindlib``; at most ``COMMAND_CHARS`` characters with ``cut``, else at most
    ``CELL_CHARS``."""
    cmd = (cmd or "").removeprefix("python -m bindlib ")
    most = COMMAND_CHARS if cut else CELL_CHARS
    return cmd if len(cmd) <= most else cmd[:most - 2].rstrip() + " …"


def _device(device: str | None) -> str:
    """``cpu (x86_64, 1 threads)`` -> ``cpu, 1 thread``; other devices as recorded."""
    m = re.fullmatch(r"cpu \(.*?(\d+) threads?\)", device or "")
    return (f"cpu, {m[1]} thread{'s' * (m[1] != '1')}" if m else device) or "-"


class SourcesTable(Table):
    """A ``Table`` whose cells may wrap after an underscore or a slash, so a long results-file name or path
    does not push the table out of the column; with no rows it says so instead of showing an empty frame."""

    @property
    def _constructor(self):
        return SourcesTable

    def __repr__(self) -> str:
        return "(no results files read)" if self.empty else super().__repr__()

    def _repr_html_(self):
        if self.empty:
            return "<p>(no results files read)</p>"
        return breakable(super()._repr_html_(), "td", "_/")


def sources_table(read=None, cut: bool = False) -> pd.DataFrame:
    """The files of ``sources``, narrow columns first: its commit, whether that commit pins the code, device,
    wall time, and the command that wrote it (without ``python -m bindlib``)."""
    return SourcesTable([{"results file": s["file"].removesuffix(".json"),
                   "commit": ", ".join(c[:7] for c in s["commits"]) or "-",
                   "code pinned": {True: "no", False: "yes", None: "-"}[s["dirty"]],
                   "device": _device(s["device"]), "wall (min)": f"{s['wall_seconds'] / 60:.1f}",
                   "written by": _command(s["command"], cut) or "(no provenance)"}
                  for s in sources(read)])


def _names(rows: list[dict], most: int = 8) -> str:
    names = [r["file"] for r in rows]
    return ", ".join(names) if len(names) <= most else ", ".join(names[:most]) + f" and {len(names) - most} more"


def sources_sentence(read=None) -> Prose:
    """What ``sources`` says, as prose: counts, and the files whose commit does not pin the code."""
    rows = sources(read)
    if not rows:
        return Prose("This chapter read no results files: every measurement in it was made as the chapter ran.")
    n, commands = len(rows), {r["command"] for r in rows if r["command"]}
    commits = {c for r in rows for c in r["commits"]}
    text = (f"This chapter read {n} results file{'s' * (n != 1)}, written by {len(commands)} bindlib "
            f"command{'s' * (len(commands) != 1)} at {len(commits)} commit{'s' * (len(commits) != 1)}.")
    dirty = [r for r in rows if r["dirty"]]
    bare = [r for r in rows if r["dirty"] is None]
    if not dirty:
        text += " Every one was written from a clean tree, so its commit pins the code that wrote it."
    else:
        text += (f" {len(dirty)} of them {'were' if len(dirty) != 1 else 'was'} written from a tree with uncommitted "
                 "changes, before results commands refused to run from one, so the commit recorded says where "
                 f"the code stood but not exactly what it was: {_names(dirty)}.")
    if bare:
        text += f" {len(bare)} carr{'y' if len(bare) != 1 else 'ies'} no provenance: {_names(bare)}."
    return Prose(text)


def repository_sentence(results_dir=None) -> Prose:
    """Of every results file in ``results_dir`` (default data/results), how many were written dirty, by kind."""
    files = io.results_files("*.json", results_dir)
    dirty = io.dirty_results(results_dir)
    if not dirty:
        return Prose(f"Every results file in data/results ({len(files)}) was written from a clean tree.")
    kinds: dict[str, int] = {}
    for d in dirty:
        kind = Path(d["file"]).stem.split("_")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    by_kind = ", ".join(f"{k} {kind}" for kind, k in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    were = "was" if len(dirty) == 1 else "were"
    return Prose(f"Of the {len(files)} results files in data/results, {len(dirty)} {were} written from a tree with "
                 f"uncommitted changes ({by_kind}); the other {len(files) - len(dirty)} are pinned to a clean "
                 "commit. Each chapter's last table marks the ones it read.")
