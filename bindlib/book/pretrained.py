"""Chapter 8's book helpers: the results readers and the rebind exercise's checker."""
from __future__ import annotations

import re
from typing import Callable

from ..pretrained.prompts import rebind_pairs, vocabulary
from ..pretrained.results import load_records, markdown_table, reported_rows, summary_rows  # noqa: F401
from ..pretrained.tiny import tiny_tokenizer
from .exercises import compare_case, pick


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
    tok = tiny_tokenizer()
    pairs = rebind_pairs(tok, vocabulary(tok), n_pairs, 10, seed)
    word = lambda t: tok.decode([int(t)]).strip()  # noqa: E731
    for k in range(n_pairs):
        base, source = pairs.base.texts[k], pairs.source.texts[k]
        expected = {"colour_or_slot": word(pairs.base_answer[k]), "bound_shape": word(pairs.symbolic[k]),
                    "answer": word(pairs.reflexive[k])}
        where = f"Pair #{k}\n  base:   {base}\n  source: {source}"
        compare_case(where, lambda: pick(fn(base, source), REBIND_HYPOTHESES), expected)
    print(f"All {n_pairs} rebind pairs predicted correctly.")
