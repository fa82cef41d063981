"""bindlib.experiments.expand: vocabulary expansion keeps what the model learned and grows the rest."""
import pytest
import torch

from bindlib.core import io
from bindlib.experiments.expand import expand_rows, expand_vocab, split_means
from bindlib.core.model import ModelConfig, Transformer
from bindlib.core.task import TaskConfig, Vocab, sample_batch


def small_model(pos="rope"):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=Vocab().size, n_layers=1, d_model=16, n_heads=2, d_ff=32,
                                   pos_encoding=pos, max_len=80))


def test_trained_rows_move_to_their_place_and_new_rows_look_like_their_kind():
    old, new = Vocab(), Vocab(216, 216, 32)
    w = torch.randn(old.size, 8)
    w[old.color_offset:old.shape_offset] += 10.0  # colours far from everything else
    big = expand_rows(w, old, new, torch.Generator().manual_seed(0))
    assert big.shape == (new.size, 8)
    assert torch.equal(big[:old.color_offset], w[:old.color_offset])
    assert torch.equal(big[new.shape_offset:new.shape_offset + 16], w[old.shape_offset:old.shape_offset + 16])
    assert torch.equal(big[new.item_offset:], w[old.item_offset:])
    fresh = big[new.color_offset + 16:new.shape_offset]
    assert fresh.mean().item() > 8.0  # new colours start near the trained colours, not near zero
    assert len({tuple(r.tolist()) for r in fresh}) == len(fresh)  # and distinct from each other


def test_the_expanded_model_answers_old_prompts_exactly_as_before():
    model = small_model()
    old, new = Vocab(), Vocab(216, 216, 32)
    big = expand_vocab(model, old, new, max_len=200, seed=0).eval()
    batch = sample_batch(TaskConfig(), 4, seed=1, n=5)
    remap = torch.arange(old.size)
    remap[old.shape_offset:old.item_offset] += new.shape_offset - old.shape_offset
    remap[old.item_offset:] += new.item_offset - old.item_offset
    with torch.no_grad():
        a = model.eval()(batch.tokens, batch.position_ids, batch.key_mask)
        b = big(remap[batch.tokens], batch.position_ids, batch.key_mask)
    assert torch.allclose(a, b[..., remap], atol=1e-5)


def test_learned_positions_cannot_reach_longer_prompts():
    with pytest.raises(ValueError, match="learned positions 0..79 only"):
        expand_vocab(small_model("learned"), Vocab(), Vocab(216, 216, 32), max_len=200)


def test_split_means_read_the_three_length_ranges():
    by_n = {str(n): (1.0 if n <= 8 else 0.5 if n <= 16 else 0.25) for n in range(2, 25)}
    assert split_means(by_n) == {"id_accuracy": 1.0, "ood_accuracy": 0.5, "ood_17_24_accuracy": 0.25}


def test_a_short_expansion_runs_end_to_end(tmp_path, monkeypatch):
    from bindlib.experiments.expand import EXPAND_SETTINGS, run_expand

    monkeypatch.setattr(io, "CHECKPOINTS_DIR", tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(EXPAND_SETTINGS, "eval_size", 16)
    monkeypatch.setitem(EXPAND_SETTINGS, "eval_per_n", 8)
    name, rec = run_expand("data/checkpoints/text_only_cpu_s0", 0, "cpu", "test", "0" * 40, steps=2, progress=False)
    assert name == "expand_text_only_cpu_s0_steps2" and rec["steps"] == 2
    assert set(rec["accuracy_by_n"]) == {str(n) for n in range(2, 25)} and rec["ood_17_24_accuracy"] is not None
    assert (tmp_path / "ckpt" / name / "model.json").exists()


def test_the_ordered_control_expands_in_its_own_format():
    """The 216-vocabulary positional control: expanding an ordered-format model keeps the ordered format."""
    from bindlib.experiments.expand import expand_config

    cfg = expand_config("data/checkpoints/text_only_cpu_s0_ordered", seed=0)
    assert cfg.task_config().format == "ordered" and cfg.task_config().n_colors == 216
    assert expand_config("data/checkpoints/text_only_cpu_s0", seed=0).task_config().format == "standard"
