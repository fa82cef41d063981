"""The package layout: imports go downward only, with no cycles. A module holds one concept, however long.

Every ``import`` of a bindlib module counts, including those inside functions. The floors:

    0  profiles                      tables, names, paths, the paper's numbers (imports nothing)
    1  model, task                   the transformer; the prompts
  1.5  records                       what a results file may hold and be named
    2  io, packing, evaluate         files and provenance; packed batches; accuracy
       ood_axes                      the count and distance axes, and how models fail along them
       vision.render, vision.nets    pictures; the small encoders
    3  vision.hub                    Hugging Face encoders
    4  vision.encoders               the encoder registry and the project encoders
    5  vision.multimodal, vision.pretrain
  5.5  vision.featurepool            precomputed scenes and features; the image parts of training
    6  train
  6.5  settings                      the command-line settings read from the dataclass fields
    7  recipes                       the recipes, regimes and the headline table
       migrate                       bringing committed files up to the current format
       expand                        vocabulary expansion, the curriculum's last stage
  7.25 plans                         what train and curve run, from their flags
  7.5  imagestage                    image-stage recipes (levers), their runs, image throughput
    8  interp.pairs, interp.toy
    9  interp.patching, interp.knockouts, interp.probes, interp.results
   10  interp.runs, interp (the package's short-cut names)
   11  interp.buckets                binding by bucket of the count and distance axes
    9-12 pretrained.prompts, .models < .tiny, .run, .results < .runs < pretrained (chapter 8)
   11  book.exercises                the book layer: may import everything; nothing below imports it
       book.offline, book.pictures   the chart renderer; Pillow pictures
   12  book.widgets
   13  book.plots
   10  book.checks                   the method exercises' checkers (interp submodules only)
10.9   book.method_checks            the second round of exercise checkers (uses book.checks, book.learning_data)
       book.text                     wrapped text and computed prose (imports nothing of the book)
 10.5  book.control_data             the controls' results files as numbers (read by book.findings too)
10.75 book.learning_data            the image stage's results files as numbers (uses book.control_data)
   11  book.findings, book.figures, book.placement, book.student
 13.5  book.controls                 the controls' and image levers' tables and charts
       book.correction               the correction test and the learning headline table
       book.curves                   the learning curves: the neutral control and the aid ablation
   14  book.scenes, book.interp_plots, book.pretrained
   14  cli                           the command line's parser
   15  book.interp_findings          the mechanism chapters' tables (uses book.interp_plots)
   16  __main__                      the command line
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bindlib"

FLOORS = {
    "profiles": 0, "model": 1, "task": 1, "records": 1.5, "io": 2, "state": 3, "packing": 2, "evaluate": 2,
    "ood_axes": 2,
    "vision.render": 2, "vision.nets": 2, "vision.hub": 3, "vision.encoders": 4,
    "vision.multimodal": 5, "vision.pretrain": 5, "vision.grounding": 5.5, "vision.featurepool": 5.5, "train": 6, "recipes": 7, "migrate": 7,
    "plans": 7.25, "imagestage": 7.5, "headline": 7.75, "expand": 7, "settings": 6.5,
    "interp.pairs": 8, "interp.toy": 8, "interp.patching": 9, "interp.knockouts": 9, "interp.probes": 9,
    "interp.results": 9, "interp.runs": 10, "interp.buckets": 11, "interp": 10,
    "cli": 14,
    "pretrained.prompts": 9, "pretrained.models": 9, "pretrained.tiny": 10, "pretrained.run": 10,
    "pretrained.results": 10, "pretrained.runs": 11, "pretrained": 12, "book.pretrained": 14,
    "book.checks": 10, "book.method_checks": 10.9, "book.control_data": 10.5, "book.learning_data": 10.75, "book.controls": 13.5, "book.correction": 13.5, "book.curves": 13.5, "book.no_deep_supervision": 13.5, "book.provenance": 12, "book.exercises": 11, "book.findings": 11, "book.figures": 11, "book.placement": 11,
    "book.student": 11, "book.glue": 10, "book.axes": 10, "book.offline": 11, "book.pictures": 11, "book.text": 10, "book.widgets": 12,
    "book.plots": 13, "book.scenes": 14, "book.interp_plots": 14,
    "book.interp_findings": 15, "__main__": 16, "": 0, "vision": 0, "book": 0,
}
BOOK_FLOOR = FLOORS["book.exercises"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def bindlib_imports(path: Path) -> set[str]:
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
                found.add(sub if sub in FLOORS else target)
    return found - {here}


def graph() -> dict[str, set[str]]:
    return {module_name(p): bindlib_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_floor():
    missing = sorted(set(graph()) - set(FLOORS))
    assert not missing, f"add these modules to FLOORS in tests/test_layout.py: {missing}"


def test_imports_go_downward_only():
    upward = [f"{m} (floor {FLOORS[m]}) imports {d} (floor {FLOORS.get(d)})"
              for m, deps in graph().items() for d in sorted(deps)
              if d not in FLOORS or (FLOORS[d] >= FLOORS[m] and d not in ("", "vision", "book"))]
    assert not upward, "\n".join(upward)


def test_nothing_below_the_book_imports_it():
    """No module outside the book layer imports it (inside it, the floors above keep imports downward)."""
    offenders = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
                 if d.startswith("book") and not m.startswith("book") and FLOORS[m] < BOOK_FLOOR]
    assert not offenders, "\n".join(offenders)


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
