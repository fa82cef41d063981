"""Printed text that fits the book's column: lines wrapped at 84 characters (about 88 fit).

    from bindlib.book.text import say
    say(f"text_only seeds [0, 1, 2]: BS at the routing layer +1.00 ... (a long verdict line)")

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
