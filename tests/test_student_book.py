"""The student edition: every solution cell is gone, every exercise keeps its stub and checker, and it builds."""
import shutil
import subprocess
import sys

import jupytext
import nbformat
import pytest

from bindlib.book.student import SOLUTION_TAG, toc_pages, write_student_book


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "_student"
    done = write_student_book(out)
    return out, done


def test_every_toc_page_is_copied_without_solutions(student):
    out, done = student
    assert done["solutions_removed"] >= 9  # one per chapter exercise at least, two in chapter 5
    for page in toc_pages():
        paths = [p for p in (out / f"{page}.ipynb", out / f"{page}.md") if p.exists()]
        assert paths, f"{page} missing from the student edition"
        for path in paths:
            nb = nbformat.read(path, as_version=4) if path.suffix == ".ipynb" else jupytext.read(path)
            assert not [c for c in nb.cells if SOLUTION_TAG in c.metadata.get("tags", [])], path
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        assert (out / name).exists()


def test_stubs_and_checkers_stay(student):
    out, _ = student
    text = "".join((out / "chapters" / f"{c}.md").read_text() for c in
                   ("01_task", "02_text_only", "05_interchange", "06_knockouts", "07_probes"))
    for checker in ("check_answer(answer)", "check_accuracy(accuracy)", "check_patching(patch_last_token)",
                    "check_position_swap(swap_position_ids)", "check_knockout(knockout_logits)",
                    "check_identity_probe(probe_by_identity)"):
        assert checker in text
    assert "NNsight(model)\n    with nm.trace(**source" not in text  # the patching solution is gone


def test_student_pairs_stay_in_sync(student):
    out, _ = student
    for nb_path in sorted((out / "chapters").glob("*.ipynb")):
        a, b = jupytext.read(nb_path), jupytext.read(nb_path.with_suffix(".md"))
        assert [c.source.strip() for c in a.cells] == [c.source.strip() for c in b.cells], nb_path.name


def test_refuses_to_overwrite_the_repository():
    from bindlib.book.student import REPO_ROOT

    with pytest.raises(ValueError, match="refusing"):
        write_student_book(REPO_ROOT)


@pytest.mark.skipif(shutil.which("jupyter-book") is None, reason="jupyter-book is installed by the book extra")
def test_student_edition_builds(student):
    out, _ = student
    run = subprocess.run([shutil.which("jupyter-book"), "build", str(out), "--keep-going", "-n", "-W", "-q"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (out / "_build" / "html" / "chapters" / "05_interchange.html").exists()


# ---------------------------------------------------------------- the exercises, executed
EXERCISE_CHAPTERS = ("02_text_only", "03_seeing", "05_interchange", "06_knockouts", "07_probes")
STUB = "raise NotImplementedError"


def exercise_cells(path) -> list:
    """The code cells of a chapter's exercise sections (from an "## Exercise" heading to the next "## " heading),
    in order. Each section is written to run on its own, without the rest of its chapter."""
    cells, inside = [], False
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    inside = line.startswith("## Exercise")
        elif inside:
            cells.append(cell)
    return cells


def run_cells(cells, cwd) -> list:
    """Execute the cells in one fresh kernel (one torch thread); return the executed cells."""
    import os

    from nbclient import NotebookClient

    from bindlib.book.student import REPO_ROOT

    setup = nbformat.v4.new_code_cell("import torch\ntorch.set_num_threads(1)")
    nb = nbformat.v4.new_notebook(cells=[setup] + [nbformat.v4.new_code_cell(c.source, metadata=c.metadata) for c in cells])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([before] if before else []))  # this checkout's bindlib
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = before
    return nb.cells[1:]


def text_of(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("traceback", [])) + str(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


@pytest.mark.parametrize("chapter", EXERCISE_CHAPTERS)
def test_student_exercises_run_and_every_stub_says_not_implemented(student, chapter):
    """The student edition: each stub's cell prints "not implemented yet" and no exercise cell errors."""
    out, _ = student
    cells = exercise_cells(out / "chapters" / f"{chapter}.md")
    stubs = [c for c in cells if STUB in c.source]
    assert len(stubs) >= 2, f"{chapter}: at least two exercises, each with a stub that raises NotImplementedError"
    assert not [c for c in cells if SOLUTION_TAG in c.metadata.get("tags", [])]
    for cell in run_cells(cells, out / "chapters"):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{chapter}: a cell raised\n{cell.source[:300]}\n{text_of(cell)[-2000:]}"
        if STUB in cell.source:
            assert "not implemented yet" in text_of(cell), f"{chapter}: the stub cell does not say so\n{cell.source[:300]}"


@pytest.mark.parametrize("chapter", EXERCISE_CHAPTERS)
def test_hidden_solutions_pass_their_checkers(chapter):
    """The full edition: every solution cell runs its checker without an error."""
    from bindlib.book.student import REPO_ROOT

    cells = exercise_cells(REPO_ROOT / "chapters" / f"{chapter}.md")
    solutions = [c for c in cells if SOLUTION_TAG in c.metadata.get("tags", [])]
    assert len(solutions) >= 2 and all("check_" in c.source for c in solutions)
    for cell in run_cells(cells, REPO_ROOT / "chapters"):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{chapter}: a cell raised\n{cell.source[:300]}\n{text_of(cell)[-2000:]}"
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            assert "not implemented yet" not in text_of(cell)
