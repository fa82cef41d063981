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


# ---------------------------------------------------------------- chapter 4a: the seed-wise correction comparison
def correction(frame):
    positional = frame[(frame["bs_before"] < -0.5) & frame["bs_after"].notna()]
    tested = positional[positional["bs_control"].notna()]
    turned = tested[tested["bs_after"] > 0.5]
    return {"positional": len(positional), "tested": len(tested), "stayed": len(tested) - len(turned),
            "with_control": int((turned["bs_control"] > 0.5).sum()), "images_alone": int((turned["bs_control"] <= 0.5).sum())}


def test_correction_checker_accepts_the_solution_and_names_the_mistakes(capsys):
    X.check_correction(correction)
    assert "right on all" in capsys.readouterr().out

    def untested_too(frame):  # counts a seed whose control was not measured
        out = correction(frame)
        return {**out, "tested": out["positional"]}

    def loose(frame):  # >= instead of >: -0.5 counted as positional
        f = frame.copy()
        f.loc[f["bs_before"] == -0.5, "bs_before"] = -0.51
        return correction(f)

    with pytest.raises(AssertionError, match="cannot be tested"):
        X.check_correction(untested_too)
    with pytest.raises(AssertionError, match="strict"):
        X.check_correction(loose)
    with pytest.raises(AssertionError, match="not implemented yet"):
        X.check_correction(lambda frame: (_ for _ in ()).throw(NotImplementedError))


def test_the_committed_correction_table_has_one_positional_seed_that_turns_with_its_control():
    from bindlib.book.method_checks import committed_correction_frame, reference_correction

    counts = reference_correction(committed_correction_frame())
    assert counts["images_alone"] == 0 and counts["with_control"] >= 1 and counts["tested"] == counts["positional"]


# ---------------------------------------------------------------- chapter 2: break the plateau
def test_break_plateau_checker_rejects_configs_before_training():
    def stub(cfg):
        raise NotImplementedError

    def off(cfg):
        return cfg

    def last_block(cfg):
        cfg.hop_layer = 2
        for stage in cfg.stages[1:]:
            stage.hop_weight = 1.0
        return cfg

    def longer(cfg):
        cfg.stages[-1].steps *= 10
        return last_block(cfg)

    for fn, message in ((stub, "not implemented yet"), (off, "loss is off"), (last_block, "middle block"),
                        (longer, "Keep the task")):
        with pytest.raises(AssertionError, match=message):
            X.check_break_plateau(fn)


def test_breaking_the_plateau_trains_within_a_minute_and_a_half_on_one_thread():
    """The chapter's solution: deep supervision after block 1, from the second stage on. The exercise promises
    about a minute on one thread; the bound leaves room for a loaded machine."""
    def solution(cfg):
        cfg.hop_layer = 1
        for stage in cfg.stages[1:]:
            stage.hop_weight = 1.0
        return cfg

    run = X.check_break_plateau(solution)
    assert run["two_hop"] >= 0.9 and run["steps"] <= 900
