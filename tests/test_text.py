"""Printed text wraps to the book's column."""
import pytest

from bindlib.book.text import WIDTH, say, wrap


def test_long_lines_wrap_with_a_hanging_indent():
    line = "  seed 0: " + " ".join(f"word{k}" for k in range(60))
    lines = wrap(line).splitlines()
    assert len(lines) > 1 and all(len(l) <= WIDTH for l in lines)
    assert lines[0].startswith("  seed 0:") and all(l.startswith("    ") for l in lines[1:])
    assert " ".join(wrap(line).split()) == " ".join(line.split())  # nothing lost


def test_short_lines_and_table_rows_are_kept():
    table_row = "project_cnn      49    128     240,832  " + "x" * 80
    text = "short line\n" + table_row
    assert wrap(text) == text


def test_say_prints_wrapped(capsys):
    say("a" * 10, "b " * 60)
    out = capsys.readouterr().out
    assert all(len(l) <= WIDTH for l in out.splitlines()) and out.startswith("aaaaaaaaaa b")
    with pytest.raises(ValueError, match="too narrow"):
        wrap("x", width=5)


