"""The method exercises: each checker accepts a correct solution and rejects the chapter's stub."""
import pytest
import torch
from nnsight import NNsight

from bindlib.book import exercises as X
from bindlib.interp.probes import fit_probe


def accuracy(model, batch):
    logits = model(**batch.model_inputs())
    rows = torch.arange(len(batch))
    return (logits[rows, batch.query_pos].argmax(-1) == batch.target).float().mean().item()


def patch(model, base, source, layer):
    rows, nm = torch.arange(len(base)), NNsight(model)
    with nm.trace(**source.model_inputs()):
        src = nm.blocks[layer].hook_resid_pre.output[rows, source.query_pos].save()
    with nm.trace(**base.model_inputs()):
        nm.blocks[layer].hook_resid_pre.output[rows, base.query_pos] = src
        logits = nm.output.save()
    return logits[rows, base.query_pos]


def swap(batch, i, j):
    pid, rows = batch.position_ids.clone(), torch.arange(len(batch))
    for pos in (batch.color_pos, batch.shape_pos):
        pid[rows, pos[:, i]], pid[rows, pos[:, j]] = batch.position_ids[rows, pos[:, j]], batch.position_ids[rows, pos[:, i]]
    return pid


def gap(batch, g):
    from bindlib.core.task import CTX_END

    end = (batch.tokens == CTX_END).float().argmax(-1)
    return batch.position_ids + g * (torch.arange(batch.tokens.shape[1])[None, :] > end[:, None])


def knock(model, batch, targets, layer):
    rows, nm = torch.arange(len(batch)), NNsight(model)
    with nm.trace(**batch.model_inputs()):
        scores = nm.blocks[layer].attn.hook_scores.output
        block = torch.zeros_like(scores, dtype=torch.bool)
        block[rows, :, batch.query_pos] = targets[:, None, :]
        nm.blocks[layer].attn.hook_scores.output = scores.masked_fill(block, torch.finfo(scores.dtype).min)
        logits = nm.output.save()
    return logits[rows, batch.query_pos]


def identity_probe(X_, y, identity):
    ids = identity.unique()
    test = torch.isin(identity, ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(1))[: len(ids) // 3]])
    return fit_probe(X_[~test], y[~test], int(y.max()) + 1, Cs=(1.0,)).accuracy(X_[test], y[test])


def leaky_probe(X_, y, identity):
    test = torch.arange(len(y)) % 3 == 0  # a random split: identities on both sides
    return fit_probe(X_[~test], y[~test], int(y.max()) + 1, Cs=(1.0,)).accuracy(X_[test], y[test])


@pytest.mark.parametrize("check, good, bad", [
    (X.check_accuracy, accuracy, lambda m, b: 0.5),
    (X.check_patching, patch, lambda m, b, s, l: m(**b.model_inputs())[torch.arange(len(b)), b.query_pos]),
    (X.check_position_swap, swap, lambda b, i, j: b.position_ids.clone()),
    (X.check_knockout, knock, lambda m, b, t, l: m(**b.model_inputs())[torch.arange(len(b)), b.query_pos]),
    (X.check_identity_probe, identity_probe, leaky_probe),
    (X.check_gap, gap, lambda b, g: b.position_ids + g),
])
def test_checker_accepts_a_solution_and_rejects_a_wrong_one(check, good, bad, capsys):
    check(good)
    assert capsys.readouterr().out.strip()
    with pytest.raises(AssertionError):
        check(bad)
