"""The Colab badge and setup cell of every notebook (scripts/colab.py): where they point, what they
install, and the light clone they make (one commit, no checkpoints but the page's own)."""
import importlib.util
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = [REPO / "intro.ipynb"] + sorted((REPO / "chapters").glob("*.ipynb"))


def _colab():
    spec = importlib.util.spec_from_file_location("colab", REPO / "scripts" / "colab.py")
    colab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(colab)
    return colab


colab = _colab()


def _book_repository():
    repo = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_and_clone_url_agree_with_the_book_config(path):
    """The badge opens this very notebook from the repository _config.yml names, and the setup cell clones
    that repository (and branch). Whether the repository is public at that URL is not checked here."""
    url, branch = _book_repository()
    owner_name = url.removeprefix("https://github.com/")
    for nb in (nbformat.read(path, as_version=4), jupytext.read(path.with_suffix(".md"))):
        badge, setup = nb.cells[0], nb.cells[1]
        hrefs = re.findall(r'href="([^"]+)"', badge.source)
        rel = path.relative_to(REPO).as_posix()
        assert hrefs == [f"https://colab.research.google.com/github/{owner_name}/blob/{branch}/{rel}"]
        clones = re.findall(r"git clone [^\"]*?(\S+) /content/book", setup.source)
        assert clones == [url], clones
        assert ("--branch " + branch in setup.source) == (branch != "main")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_opens_with_the_generated_cells(path):
    data = json.loads((REPO / "scripts" / "colab_data.json").read_text())["notebooks"]
    rel = path.relative_to(REPO).as_posix()
    needs = data[rel]["checkpoints"]
    assert not colab.problems(nbformat.read(path, as_version=4), rel, needs)
    assert not colab.problems(jupytext.read(path.with_suffix(".md")), rel, needs)
    setup = nbformat.read(path, as_version=4).cells[1]
    assert "remove-input" in setup.metadata["tags"] and not setup.outputs
    for name in needs:
        assert (REPO / "data" / "checkpoints" / name / "model.json").exists(), name


def test_the_manifest_is_what_the_notebooks_load():
    assert json.loads((REPO / "scripts" / "colab_data.json").read_text()) == colab.manifest(), \
        "run python scripts/colab.py"


def test_checkpoints_are_read_from_the_code(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in (
        'start = CHECKPOINTS_DIR / "text_only_cpu_s0_subskills"\n!ls data',
        'm = load_checkpoint(regimes.checkpoint_dir("text_only", 1))',
        "demo = existing_checkpoints()[0]",
        "load_checkpoint(checkpoint_dir(regime, seed))",
        "check_accuracy(accuracy)",
        'print("data/checkpoints/text_only_cpu_s2_learnedpos is one")',
    )])
    needs, unresolved = colab.needed_checkpoints(nb)
    assert needs == ["text_only_cpu_s0", "text_only_cpu_s0_subskills", "text_only_cpu_s1", "text_only_cpu_s2_learnedpos"]
    assert unresolved == ["cell 3: checkpoint_dir(regime, seed)"]


def _runtime_names():
    lines = (REPO / "scripts" / "colab_runtime.txt").read_text().splitlines()
    return {line.split("==")[0].lower() for line in lines if line and not line.startswith("#")}


def test_the_setup_cell_installs_nothing_colab_ships():
    installs = re.findall(r"pip install -q (.*?)['\"], shell=True", colab.SETUP_CODE)
    packages = [re.split(r"[=<>!~\[]", arg.strip('"\''))[0].lower() for line in installs for arg in line.split()
                if not arg.startswith("-") and "/content/book" not in arg and "{" not in arg]
    assert packages == ["nnsight"]
    assert '"nnsight==0.8.1"' in colab.SETUP_CODE  # pinned, as in pyproject.toml
    assert {"torch", "numpy", "pandas", "altair", "ipywidgets", "safetensors", "tqdm"} <= _runtime_names()
    assert not set(packages) & _runtime_names()


def test_the_setup_cell_does_nothing_outside_colab():
    assert "google.colab" not in sys.modules
    namespace = {}
    exec(compile(colab.setup_code(["text_only_cpu_s0"]), "setup", "exec"), namespace)
    assert set(namespace) == {"sys", "__builtins__"}


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_the_setup_cell_clones_light_and_fetches_on_demand(tmp_path, monkeypatch):
    """The cell's Colab branch against a small repository served as GitHub serves (partial clone allowed):
    everything but data/checkpoints, then the page's checkpoints; fetch_checkpoints adds another."""
    src = tmp_path / "src"
    for rel in ("pyproject.toml", "bindlib/x.py", "data/results/r.json", "data/checkpoints/need/model.json",
                "data/checkpoints/other/model.json", "data/checkpoints/other/model.safetensors"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", ".", cwd=src)
    _git("commit", "-q", "-m", "x", cwd=src)
    origin = tmp_path / "origin.git"
    _git("clone", "-q", "--bare", str(src), str(origin), cwd=tmp_path)
    _git("config", "uploadpack.allowFilter", "true", cwd=origin)
    _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=origin)
    book = tmp_path / "book"
    code = colab.setup_code(["need"]).replace(colab.REPO_URL, f"file://{origin}").replace("/content/book", str(book))
    assert importlib.util.find_spec("bindlib") and importlib.util.find_spec("nnsight")  # so the cell installs nothing
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "setup", "exec"), namespace)
    files = sorted(p.relative_to(book).as_posix() for p in book.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert files == ["bindlib/x.py", "data/checkpoints/need/model.json", "data/results/r.json", "pyproject.toml"]
    assert Path.cwd() == book and sys.path[0] == str(book)
    shallow = subprocess.run(["git", "-C", str(book), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True)
    assert shallow.stdout.strip() == "true"
    namespace["fetch_checkpoints"]("other")
    assert (book / "data/checkpoints/other/model.safetensors").read_text() == "data/checkpoints/other/model.safetensors"
    exec(compile(code, "setup", "exec"), {})  # again: nothing to do, nothing fails
    assert not subprocess.run(["git", "-C", str(book), "status", "--porcelain"], capture_output=True, text=True).stdout
