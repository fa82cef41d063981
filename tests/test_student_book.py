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
