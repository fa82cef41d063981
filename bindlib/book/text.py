"""Text in the chapters' outputs: printed text that fits the column, and table headers that can break.

    from bindlib.book.text import say
    say(f"{label:>5}: " + batch.decode(0))    # code-like output: printed, wrapped at 84 characters

A wrapped line keeps its indentation, and its continuation lines are indented two more spaces,
so a labelled line ("seed 0: ...") still reads as one item.  Lines of a table (two or more runs
of two spaces, as printed by aligned f-strings) are left alone: print those as HTML tables.
"""
from __future__ import annotations

import re
import textwrap

WIDTH = 84  # characters: a 92-character line measured 807 px against a 772 px output column


def _is_table_row(line: str) -> bool:
    return len(re.findall(r"\S {2,}\S", line)) >= 2


def wrap(text: str, width: int = WIDTH) -> str:
    """``text`` with every line longer than ``width`` wrapped (indentation kept, continuation indented)."""
    if width < 20:
        raise ValueError(f"wrap width {width} is too narrow to read; use at least 20 (the book uses {WIDTH}).")
    out = []
    for line in str(text).splitlines() or [""]:
        if len(line) <= width or _is_table_row(line):
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(textwrap.wrap(line.strip(), width=width, initial_indent=indent,
                                 subsequent_indent=indent + "  ", break_on_hyphens=False,
                                 break_long_words=True))
    return "\n".join(out)


def say(*parts, width: int = WIDTH, sep: str = " ") -> None:
    """print(), but wrapped to the column (``parts`` joined with ``sep``, like print)."""
    print(wrap(sep.join(str(p) for p in parts), width=width))


_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]<>#|$]")


class Prose:
    """A computed finding. The book renders it as prose (its text/markdown form, every markdown
    character escaped, one paragraph per line of ``text``); its text form, which nbval compares and a
    terminal prints, is ``text`` wrapped at ``WIDTH``."""

    def __init__(self, text: str):
        self.text = str(text)

    def __repr__(self) -> str:
        return wrap(self.text)

    def _repr_markdown_(self) -> str:
        return "\n\n".join(_MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(0), line.strip())
                           for line in self.text.splitlines() if line.strip())


_CELLS = {tag: re.compile(rf"(<{tag}\b[^>]*>)(.*?)(</{tag}>)", re.S) for tag in ("th", "td")}


def breakable(html: str, tag: str = "th", after: str = "_") -> str:
    """``html`` with a line-break opportunity (``<wbr>``) after every character of ``after`` in its ``tag``
    cells (``th`` or ``td``), so a long identifier (noise_half_replay) wraps between its words instead of
    mid-word or past the column."""
    def cell(m):
        text = m[2]
        for ch in after:
            text = text.replace(ch, ch + "<wbr>")
        return m[1] + text + m[3]

    return _CELLS[tag].sub(cell, html)


def breakable_headers(html: str) -> str:
    """``breakable`` on the header cells, after underscores."""
    return breakable(html, "th", "_")
