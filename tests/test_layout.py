"""The package layout: the folders are the floors, and imports go to the same folder or down, never up.

    core/         the task, the transformer, accuracy, results records and files
    training/     the staged curriculum, the training loop and exact resume (text only: image steps plug in)
    vision/       pictures, frozen encoders, image prompts and the image steps of training
    interp/       how a model binds: interchange, knockouts, probes
    pretrained/   the same instruments on released language models
    experiments/  the recipes, regimes, image-stage recipes, expansion and the headline table
    book/         the book's tables, charts, widgets and exercises
    (top)         the command line: cli, __main__

Every ``import`` of a bindlib module counts, including those inside functions. Inside one folder imports
may go either way but never in a circle. A module holds one concept, however long.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bindlib"
FLOORS = ("core", "training", "vision", "interp", "pretrained", "experiments", "book", "")  # "": bindlib/*.py


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def folder(module: str, path: Path | None = None) -> str:
    """The floor folder of a module ("" for the package's own top-level modules)."""
    path = path or _paths()[module]
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ""


def floor(module: str) -> int:
    return FLOORS.index(folder(module))


def _paths() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def bindlib_imports(path: Path, modules: set[str]) -> set[str]:
    """The bindlib modules a file imports (absolute or relative, at any depth of the file)."""
    here = module_name(path)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name[len("bindlib."):] for a in node.names if a.name.startswith("bindlib.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "bindlib" or node.module.startswith("bindlib.")):
                target = node.module[len("bindlib."):] if node.module != "bindlib" else ""
            else:
                continue
            for alias in node.names:  # `from . import io` imports the module io
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in modules else target)
    return found - {here}


def graph() -> dict[str, set[str]]:
    paths = _paths()
    return {m: bindlib_imports(p, set(paths)) for m, p in paths.items()}


def test_every_module_lives_on_a_floor():
    """Each module sits in one of the floor folders (or at the top, beside __main__), one folder deep."""
    paths = _paths()
    stray = [m for m, p in paths.items() if folder(m, p) not in FLOORS or len(p.relative_to(PACKAGE).parts) > 2]
    assert not stray, f"modules outside the floor folders {FLOORS}: {stray}"
    top = sorted(m for m, p in paths.items() if folder(m, p) == "")
    assert top == ["", "__main__", "cli"], f"only the command line sits at the top of bindlib/, found {top}"


def test_imports_go_to_the_same_folder_or_down():
    g = graph()
    unknown = [f"{m} imports {d}" for m, deps in g.items() for d in deps if d not in g]
    assert not unknown, "\n".join(unknown)
    upward = [f"{m} ({folder(m) or 'top'}) imports {d} ({folder(d) or 'top'})" for m, deps in g.items() for d in sorted(deps)
              if d and floor(d) > floor(m)]
    assert not upward, "\n".join(upward)


def test_no_cycles():
    g = graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(stack + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in g.get(m, ()):
            visit(d, stack + [m])
        state[m] = 2

    for m in g:
        visit(m, [])


def test_text_training_imports_nothing_of_vision():
    """The training floor is text only; image steps reach it as an argument built on the vision side."""
    g = graph()
    wrong = [f"{m} imports {d}" for m, deps in g.items() if folder(m) in ("core", "training") for d in deps
             if folder(d) not in ("core", "training")]
    assert not wrong, "\n".join(wrong)
