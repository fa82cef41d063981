"""Chapter 8's book helpers: the results table (from data/results/pretrained_*.json), the paper's
reported numbers, and the rebind exercise's checker."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from . import io

def load_records(results_dir=None) -> list[dict]:
    """Every data/results/pretrained_*.json record."""
    return [json.loads(f.read_text()) for f in sorted(Path(results_dir or io.RESULTS_DIR).glob("pretrained_*.json"))]


def summary_rows(records: list[dict]) -> list[dict]:
    """One row per measured model: routing site, P_sym, P_pos, BS, Sym/Pos, rebind share, swap flip, retrieval."""
    rows = []
    for rec in records:
        for role in ("llm", "vlm"):
            m = rec.get("models", {}).get(role)
            if not m:
                continue
            ic = m.get("interchange") or {}
            s = ic.get("summary") or {}
            site = s.get("routing_layer")
            at = next((d for d in ic.get("per_site", []) if d["site"] == site), {})
            rb = next((d for d in (m.get("rebind") or {}).get("per_site", []) if d["site"] == site), {})
            rows.append({"pair": rec["pair"], "model": m["hf_id"], "role": role, "routing_site": site,
                         "P_sym": at.get("symbolic"), "P_pos": at.get("positional"),
                         "BS": s.get("binding_score"), "Sym/Pos": s.get("sym_pos_ratio"),
                         "rebind_shape": rb.get("symbolic"), "swap_flip": m.get("position_swap", {}).get("flip_rate"),
                         "retrieval": _mean([r["accuracy"] for r in m.get("retrieval", [])]),
                         "pairs": ic.get("n_pairs"), "commit": rec.get("provenance", {}).get("git_commit")})
    return rows


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def reported_rows() -> list[dict]:
    """The paper's numbers (SPEC §1; from secondary summaries of the full paper), labelled as reported."""
    from .pretrained_models import PAIRS

    rows = []
    for key, spec in PAIRS.items():
        r = spec.reported
        if r.get("sym_pos_llm") is None:
            continue
        rows.append({"pair": key, "peak_layer": r["peak_layer"], "Sym/Pos LLM": r["sym_pos_llm"],
                     "Sym/Pos VLM": r["sym_pos_vlm"], "retrieval LLM": r.get("retrieval_llm"),
                     "retrieval VLM": r.get("retrieval_vlm"), "source": "reported (paper, via summaries)"})
    return rows


def markdown_table(rows: list[dict], digits: int = 3) -> str:
    if not rows:
        return ""
    cols = list(rows[0])

    def fmt(v):
        return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def results_markdown(results_dir=None) -> str:
    """The chapter's results table, or a plain sentence saying that none were run here."""
    rows = summary_rows(load_records(results_dir))
    if not rows:
        return ("No pretrained model was run for this book: data/results holds no pretrained_*.json file. "
                "Run `python -m bindlib pretrained --pair qwen3 --device cuda` on a GPU to make one.")
    return markdown_table(rows)



# ============================================================== exercise: what a rebind pair predicts
REBIND_HYPOTHESES = ("colour_or_slot", "bound_shape", "answer")
_DECL = re.compile(r"The (\w+) object is an? (\w+)\.")
_ASSOC = re.compile(r"The (\w+) holds the (\w+)\.")
_QUERY = re.compile(r"what does the (\w+) object hold\?")


def parse_prompt(text: str) -> tuple[dict, dict, str]:
    """(colour -> shape, shape -> item, query colour) of a rendered prompt."""
    return dict(_DECL.findall(text)), dict(_ASSOC.findall(text)), _QUERY.search(text).group(1)


def rebind_solution(base: str, source: str) -> dict:
    """The reference answer of the exercise (the chapter hides its own copy)."""
    b_shape, b_item, query = parse_prompt(base)
    s_shape, s_item, _ = parse_prompt(source)
    return {"colour_or_slot": b_item[b_shape[query]], "bound_shape": b_item[s_shape[query]],
            "answer": s_item[s_shape[query]]}


def check_rebind_predictions(fn: Callable[[str, str], dict], n_pairs: int = 30, seed: int = 0) -> None:
    """``fn(base_text, source_text)`` of a rebind pair returns the base item each hypothesis predicts after
    the last token's residual is copied from the source: ``colour_or_slot`` (the last token carries the
    queried colour or its slot), ``bound_shape`` (it carries the shape bound to that colour) and
    ``answer`` (it carries the answer item itself).  Checked against ``bindlib.pretrained.rebind_pairs``."""
    from .pretrained import rebind_pairs, vocabulary
    from .pretrained_models import tiny_tokenizer

    tok = tiny_tokenizer()
    pairs = rebind_pairs(tok, vocabulary(tok), n_pairs, 10, seed)
    word = lambda t: tok.decode([int(t)]).strip()  # noqa: E731
    for k in range(n_pairs):
        base, source = pairs.base.texts[k], pairs.source.texts[k]
        expected = {"colour_or_slot": word(pairs.base_answer[k]), "bound_shape": word(pairs.symbolic[k]),
                    "answer": word(pairs.reflexive[k])}
        where = f"Pair #{k}\n  base:   {base}\n  source: {source}"
        try:
            got = fn(base, source)
            got = {h: got[h] for h in REBIND_HYPOTHESES}
        except Exception as err:
            raise AssertionError(f"{where}\n  your function raised {type(err).__name__}: {err}") from err
        if got != expected:
            raise AssertionError(f"{where}\n  expected: {expected}\n  returned: {got}")
    print(f"All {n_pairs} rebind pairs predicted correctly.")
