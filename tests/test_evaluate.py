"""Evaluation (bindlib.core.evaluate): accuracy per N, the ID/OOD means, and accuracy per query slot."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bindlib.core import task as T
from bindlib.core.evaluate import AXES, evaluate, evaluate_axes
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import TaskConfig

TASK = TaskConfig()
V = TASK.vocab.size



class ScriptedModel(nn.Module):
    """Answers each prompt (at its last real token) with ``rule(tokens)``; other positions get zeros."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, tokens, position_ids=None, key_mask=None, **kw):
        B, L = tokens.shape
        logits = torch.zeros(B, L, V)
        for b in range(B):
            row = tokens[b].tolist()
            last = max(i for i, t in enumerate(row) if t != T.PAD)
            logits[b, last, self.rule(row[: last + 1])] = 10.0
        return logits


def correct(row):
    return T.answer_from_tokens(row, TASK.vocab)


def first_declared_object(row):
    """A pure positional shortcut: the item of the first *declared* object, whatever the query."""
    toks = [t for t in row if t != T.FILL]
    shape0 = toks[2]
    end = toks.index(T.CTX_END)
    assoc = toks[end + 1: -2]
    return dict(zip(assoc[0::2], assoc[1::2]))[shape0]


def first_association_line(row):
    """Another shortcut: the item on the first association line."""
    return row[row.index(T.CTX_END) + 2]


def test_untrained_model_report_shape_and_means():
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=V, n_layers=2, d_model=32, n_heads=2, d_ff=64))
    m.train()
    r = evaluate(m, TASK, per_n=64, seed=3)
    assert m.training, "evaluate restores the training mode"
    by_n = r["accuracy_by_n"]
    assert set(by_n) == {str(n) for n in range(2, 17)}
    assert all(0.0 <= a <= 1.0 for a in by_n.values())
    assert r["id_accuracy"] == pytest.approx(sum(by_n[str(n)] for n in range(2, 9)) / 7, abs=1e-4)
    assert r["ood_accuracy"] == pytest.approx(sum(by_n[str(n)] for n in range(9, 17)) / 8, abs=1e-4)
    assert set(r["accuracy_by_slot"]) == {str(s) for s in range(8)}
    assert all(0.0 <= a <= 1.0 for a in r["accuracy_by_slot"].values())
    assert r["per_n"] == 64 and r["eval_seed"] == 3
    # deterministic given the seed
    assert evaluate(m, TASK, per_n=64, seed=3) == r


def test_perfect_model_scores_one_everywhere():
    r = evaluate(ScriptedModel(correct), TASK, per_n=16, seed=0)
    assert r["id_accuracy"] == r["ood_accuracy"] == 1.0
    assert set(r["accuracy_by_n"].values()) == {1.0}
    assert set(r["accuracy_by_slot"].values()) == {1.0}


def test_positional_shortcut_shows_in_slot_accuracy():
    r = evaluate(ScriptedModel(first_declared_object), TASK, per_n=64, seed=1)
    slots = r["accuracy_by_slot"]
    assert slots["0"] == 1.0 and all(slots[str(s)] == 0.0 for s in range(1, 8))
    for n in range(2, 17):  # right exactly when slot 0 is queried: about 1/N of the time
        assert abs(r["accuracy_by_n"][str(n)] - 1 / n) < 0.2


def test_association_order_and_offset_reach_the_prompts():
    shortcut = ScriptedModel(first_association_line)
    declared = evaluate(shortcut, TASK, per_n=32, seed=2, association_order="declared", offset=3)
    assert declared["accuracy_by_slot"]["0"] == 1.0  # declared order: first line = first object
    assert all(declared["accuracy_by_slot"][str(s)] == 0.0 for s in range(1, 8))
    reversed_ = evaluate(shortcut, TASK, per_n=32, seed=2, association_order="reversed")
    assert reversed_["accuracy_by_slot"]["0"] == 0.0  # reversed: first line = last object
    axes = evaluate_axes(ScriptedModel(correct), TASK, per_n=4)
    assert set(axes) == set(AXES) == {"shuffled", "declared", "reversed", "offset_8"}
    for name, a in axes.items():
        assert a["id_accuracy"] == a["ood_accuracy"] == 1.0, name
        assert set(a["accuracy_by_n"]) == {str(n) for n in range(2, 17)}


def test_custom_ranges():
    task = TaskConfig(n_colors=6, n_shapes=6, n_items=6, id_range=(1, 3), ood_range=(4, 6))
    r = evaluate(ScriptedModel(lambda row: T.answer_from_tokens(row, task.vocab)), task, per_n=8)
    assert set(r["accuracy_by_n"]) == {str(n) for n in range(1, 7)}
    assert set(r["accuracy_by_slot"]) == {"0", "1", "2"}
    assert r["id_accuracy"] == r["ood_accuracy"] == 1.0
