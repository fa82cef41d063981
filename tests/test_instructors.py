"""The instructors' page lists every exercise of every chapter, with the difficulty, importance and time
its chapter gives it."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"\*Difficulty (\d) of 3 · importance (\d) of 3 · about (\d+) minutes")


def chapter_exercises() -> dict[tuple[str, str], tuple[int, int, int] | None]:
    """{(chapter number, title): (difficulty, importance, minutes) or None where the chapter gives no header}."""
    found = {}
    for path in sorted(ROOT.glob("chapters/*.md")):
        number = re.match(r"0*(\d+[a-z]?)_", path.name).group(1)
        lines = path.read_text().splitlines()
        for k, line in enumerate(lines):
            if line.startswith("## Exercise: "):
                title = line.removeprefix("## Exercise: ").strip()
                header = next((HEADER.match(x) for x in lines[k + 1:k + 4] if HEADER.match(x)), None)
                found[(number, title)] = tuple(int(g) for g in header.groups()) if header else None
    return found


def page_rows() -> dict[tuple[str, str], tuple[int, int, int]]:
    rows = {}
    for line in (ROOT / "instructors.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].isdigit():
            rows[(cells[0], cells[1])] = tuple(int(c) for c in cells[2:])
    return rows


def test_every_exercise_is_listed_with_its_numbers():
    exercises, rows = chapter_exercises(), page_rows()
    assert len(exercises) >= 14
    for (number, title), numbers in exercises.items():
        assert (number, title) in rows, f"chapter {number}'s exercise {title!r} is missing from instructors.md"
        if numbers is not None:
            assert rows[(number, title)] == numbers, f"{title!r}: the page says {rows[(number, title)]}, the chapter {numbers}"


def test_chapters_with_exercises_give_each_a_header():
    for (number, title), numbers in chapter_exercises().items():
        if number in ("2", "3", "5", "6", "7"):
            assert numbers is not None, f"chapter {number}, {title!r}: no difficulty/importance/time line"
            assert all(1 <= x <= 3 for x in numbers[:2]) and numbers[2] > 0


def test_the_page_is_in_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for c in toc["chapters"]]
    assert files.index("instructors") == files.index("bibliography") - 1
