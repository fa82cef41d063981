"""The chapters' provenance cells (bindlib.book.provenance): which files a chapter read, and which are dirty."""
from __future__ import annotations

import json

import pytest

from bindlib.core import io
from bindlib.book import provenance as P


def _write(folder, name, commit, command="python -m bindlib train --seed 0", **extra):
    path = folder / f"{name}.json"
    record = {"kind": "training", "provenance": {"command": command, "git_commit": commit, "device": "cpu",
                                                 "wall_seconds": 120.0, **extra}}
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def files(tmp_path):
    return {"clean": _write(tmp_path, "training_a", "a" * 40),
            "dirty": _write(tmp_path, "training_b", "b" * 40 + "-dirty", command="python -m bindlib interp --seed 1"),
            "bare": (lambda p: (p.write_text(json.dumps({"kind": "x"})), p)[1])(tmp_path / "old.json")}


def test_read_results_records_every_file_it_reads(files):
    io.read_results(files["clean"])
    assert io.relpath(files["clean"].resolve()) in io.READ


def test_a_chapter_that_read_nothing_says_its_numbers_were_computed_live():
    assert "read no results files" in P.sources_sentence(read=[]).text


def test_all_clean_files_are_said_to_pin_their_code(files):
    s = P.sources_sentence(read=[io.relpath(files["clean"])]).text
    assert "1 results file," in s and "pins the code" in s and "uncommitted" not in s


def test_a_dirty_file_is_named_and_marked(files):
    read = [io.relpath(f) for f in (files["clean"], files["dirty"])]
    s = P.sources_sentence(read=read).text
    assert "2 results files" in s and "2 bindlib commands" in s and "2 commits" in s
    assert "1 of them was written from a tree with uncommitted changes" in s and "training_b.json" in s
    assert "training_a.json" not in s
    t = P.sources_table(read=read)
    assert list(t["code pinned"]) == ["yes", "no"]
    assert list(t["written by"]) == ["train --seed 0", "interp --seed 1"]  # without "python -m bindlib"
    assert list(t["commit"]) == ["a" * 7, "b" * 7]
    assert list(t["results file"]) == ["training_a", "training_b"]
    assert "<td>training_<wbr>a</td>" in t._repr_html_()  # long names may wrap at an underscore


def test_an_empty_sources_table_says_so():
    t = P.sources_table(read=[])
    assert repr(t) == "(no results files read)" and "no results files read" in t._repr_html_()


def test_device_is_shortened_for_the_table():
    assert P._device("cpu (x86_64, 1 threads)") == "cpu, 1 thread"
    assert P._device("cpu (x86_64, 2 threads)") == "cpu, 2 threads"
    assert P._device("cuda (NVIDIA H100 80GB HBM3)") == "cuda (NVIDIA H100 80GB HBM3)"
    assert P._device(None) == "-"


def test_a_file_without_provenance_is_said_to_carry_none(files):
    s = P.sources_sentence(read=[io.relpath(files["bare"])]).text
    assert "1 carries no provenance: old.json" in s


def test_repository_sentence_counts_dirty_files_by_kind(files, tmp_path):
    s = P.repository_sentence(tmp_path).text
    assert "Of the 3 results files" in s and "1 was written" in s and "1 training" in s


def test_repository_sentence_when_everything_is_clean(tmp_path):
    _write(tmp_path, "training_a", "a" * 40)
    assert P.repository_sentence(tmp_path).text == "Every results file in data/results (1) was written from a clean tree."


def test_surveying_the_whole_folder_does_not_count_as_a_chapter_reading_it(files, tmp_path):
    before = dict(io.READ)
    P.repository_sentence(tmp_path)
    assert io.READ == before  # the chapter's sources table still lists only what its own cells read


def test_counts_are_the_numbers_of_the_chapter_note():
    from bindlib.book.provenance import counts

    assert counts([]) == {"files": 0, "commands": 0, "commits": 0, "dirty": 0, "bare": 0}
    some = sorted(p.relative_to(io.REPO_ROOT).as_posix() for p in io.RESULTS_DIR.glob("training_text_only_cpu_s*.json"))[:2]
    c = counts(some)
    assert c["files"] == 2 and 1 <= c["commands"] <= 2 and c["dirty"] + c["bare"] <= 2


def test_a_long_command_is_cut_in_the_table():
    from bindlib.book.provenance import CELL_CHARS, COMMAND_CHARS, _command

    long = "python -m bindlib ood-axes --checkpoint " + " ".join(f"data/checkpoints/run_{k}" for k in range(30))
    assert len(_command(long, cut=True)) <= COMMAND_CHARS and _command(long, cut=True).endswith(" …")
    assert len(_command(long)) <= CELL_CHARS < len(long)  # uncut, a cell still fits the page's rule
    medium = "python -m bindlib train " + "x" * 200
    assert _command(medium) == medium.removeprefix("python -m bindlib ")
    assert _command("python -m bindlib train --seed 0") == "train --seed 0"
