"""The two OOD axes (bindlib.core.ood_axes): what a gap and a filler do to a prompt, and the error taxonomy's
positive controls."""
import json

import pytest
import torch

from bindlib.core import io, ood_axes as A
from bindlib.__main__ import main
from bindlib.core.model import ModelConfig, Transformer, answer_logits
from bindlib.core.task import CTX_END, FILL, TaskConfig, answer_from_tokens, sample_batch

TASK = TaskConfig()


def tiny_model(**cfg):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=TASK.vocab.size, n_layers=2, d_model=16, n_heads=2, d_ff=32, **cfg)).eval()


@pytest.mark.parametrize("gap", [0, 5, 48])
def test_gap_moves_positions_after_the_context_only(gap):
    batch = sample_batch(TASK, 16, seed=3, n=(2, 8))
    moved = A.move_after_context(batch, gap, "gap")
    end = A.context_end(batch)
    assert torch.equal(moved.tokens, batch.tokens)
    cols = torch.arange(batch.tokens.shape[1])
    after = cols[None, :] > end[:, None]
    assert torch.equal(moved.position_ids - batch.position_ids, gap * after.long())
    # the query -> context distance grows by the gap; the query -> association-line distance does not
    r = torch.arange(16)
    q = moved.query_pos
    assert torch.equal(moved.position_ids[r, q] - moved.position_ids[r, moved.color_pos[:, 0]],
                       batch.query_pos - batch.color_pos[:, 0] + gap)


@pytest.mark.parametrize("gap", [1, 7, 32])
def test_filler_inserts_fill_tokens_and_keeps_the_answer(gap):
    batch = sample_batch(TASK, 16, seed=4, n=(2, 8))
    moved = A.move_after_context(batch, gap, "filler")
    end = A.context_end(batch)
    assert torch.equal(A.context_end(moved), end)
    for b in range(16):
        row = moved.tokens[b, : int(moved.query_pos[b]) + 1].tolist()
        assert row[int(end[b]) + 1: int(end[b]) + 1 + gap] == [FILL] * gap
        assert row.count(FILL) == gap and row.count(CTX_END) == 1
        assert answer_from_tokens([t for t in row if t != FILL], TASK.vocab) == int(moved.target[b])
        # the recorded positions still point at the object's tokens
        k = int(moved.query_slot[b])
        assert moved.tokens[b, moved.assoc_item_pos[b, k]] == moved.items[b, k]
    assert torch.equal(moved.key_mask.sum(-1), moved.query_pos + 1)


def test_rope_sees_a_shift_of_everything_as_nothing_but_a_gap_as_distance():
    """Positive control of the gap, on the committed recipe model: a relative encoding ignores a shift of every
    position, so only the gap's moving of the query away from the context changes its answers."""
    model, _ = io.load_checkpoint(io.CHECKPOINTS_DIR / "text_only_cpu_s0")
    batch = sample_batch(TASK, 200, seed=5, n=8)
    base = answer_logits(model, batch)
    shifted = batch.select(torch.arange(200))
    shifted.position_ids = shifted.position_ids + 96
    assert torch.allclose(answer_logits(model, shifted), base, atol=1e-3)
    far = answer_logits(model, A.move_after_context(batch, 96, "gap")).argmax(-1)
    assert (base.argmax(-1) == batch.target).float().mean() > 0.98
    assert (far == batch.target).float().mean() < 0.9


def test_taxonomy_names_the_neighbour_a_rigged_model_picks():
    """Positive control: answers that are always the next-declared object's item are all declaration
    neighbours; answers from a random other object come out at the chance shares."""
    batch = sample_batch(TASK, 2000, seed=6, n=8)
    q = batch.query_slot
    r = torch.arange(len(batch))
    nxt = torch.where(q + 1 < batch.n_objects, q + 1, q - 1)
    tax = A.error_taxonomy(batch, batch.items[r, nxt])
    assert tax["wrong"] == 2000 and tax["counts"]["declaration_neighbour"] == 2000
    g = torch.Generator().manual_seed(0)
    other = (q + 1 + torch.randint(0, 7, (2000,), generator=g)) % 8
    tax = A.error_taxonomy(batch, batch.items[r, other])
    for kind, share in tax["share_among_other_items"].items():
        assert abs(share - tax["chance_among_other_items"][kind]) < 0.03, kind
    assert A.error_taxonomy(batch, batch.colors[:, 0])["counts"]["not_in_prompt"] == 2000  # a colour is no item


def test_readout_attention_reads_hook_patterns():
    model = tiny_model()
    batch = sample_batch(TASK, 8, seed=7, n=4)
    att = A.readout_attention(model, batch)
    assert len(att["line"]) == len(att["context"]) == 2
    assert all(0.0 <= x <= 1.0 for x in att["line"] + att["context"])


def test_learned_positions_state_their_limits():
    model = tiny_model(pos_encoding="learned", max_len=60)
    assert A.gap_limit(model, TASK, 8) == 60 - 36
    assert A.count_limit(model, TASK) == 14  # 4 + 4 * 14 = 60 positions
    assert A.gap_limit(tiny_model(), TASK, 8) is None and A.count_limit(tiny_model(), TASK) == 16
    out = A.distance_axis(model, TASK, gaps=(0, 16, 32), per_cell=8, diagnose=False)
    assert "skipped" in out["fillers"]["gap"]["by_gap"]["32"]


def test_ood_axes_command_writes_one_file_per_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(A, "GAPS", (0, 48))
    monkeypatch.setattr(A, "MAX_COUNT", 10)
    path = io.save_checkpoint(tiny_model(), tmp_path / "tiny_ckpt",
                              meta={"regime": "text_only", "seed": 0, "train_config": {"task": {}}})
    assert main(["ood-axes", "--checkpoint", str(path), "--per-cell", "8", "--allow-dirty", "--device", "cpu"]) == 0
    rec = json.loads((tmp_path / "results" / "ood_axes_tiny_ckpt.json").read_text())
    assert rec["kind"] == "ood_axes" and rec["count"]["max_n"] == 10 and set(rec["distance"]["fillers"]) == {"gap", "filler"}
    assert rec["provenance"]["command"].startswith("python -m bindlib ood-axes")
    assert main(["ood-axes", "--checkpoint", str(path), "--per-cell", "0", "--allow-dirty"]) == 2
    assert main(["ood-axes", "--checkpoint", str(tmp_path / "missing"), "--allow-dirty"]) == 2


def test_interp_buckets_on_the_hand_wired_model_and_through_the_command(tmp_path, monkeypatch):
    """Positive control: the hand-wired symbolic model reads BS +1 in a gap bucket; the command writes one file
    per checkpoint and refuses zero pairs."""
    from bindlib.interp import ToyBindingModel
    from bindlib.interp import buckets as BK

    sizes = BK.BucketSizes(pairs=48, rebind_pairs=48, swap_prompts=32)
    symbolic = BK.bucket(ToyBindingModel(TASK.vocab, 16, "symbolic"), TASK, (4, 8), 48, sizes)
    assert symbolic["summary"]["binding_score"] == 1.0 and symbolic["rebind"]["shape"] == 1.0
    ordered = TaskConfig(format="ordered")
    positional = BK.bucket(ToyBindingModel(TASK.vocab, 16, "positional", fmt="ordered"), ordered, (9, 12), 0, sizes)
    assert positional["summary"]["binding_score"] == -1.0 and positional["position_swap"]["flip_rate"] == 1.0
    monkeypatch.setattr(io, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(BK, "COUNT_BUCKETS", ((9, 10),))
    monkeypatch.setattr(BK, "GAP_BUCKETS", (0,))
    path = io.save_checkpoint(tiny_model(), tmp_path / "tiny_ckpt",
                              meta={"regime": "text_only", "seed": 0, "train_config": {"task": {}}})
    assert main(["interp-buckets", "--checkpoint", str(path), "--pairs", "8", "--draw-factor", "1",
                 "--allow-dirty", "--device", "cpu"]) == 0
    rec = json.loads((tmp_path / "results" / "interchange_buckets_tiny_ckpt.json").read_text())
    assert rec["kind"] == "interchange_buckets" and set(rec["count"]) == {"9-10"} and set(rec["gap"]) == {"0"}
    assert main(["interp-buckets", "--checkpoint", str(path), "--pairs", "0", "--allow-dirty"]) == 2


def test_the_position_swap_is_measured_under_the_gap():
    """The swap re-asks every prompt; the gap must apply to the re-asked prompts, so a model whose answers
    change with the gap shows it in the swap's clean accuracy."""
    from bindlib.interp import buckets as BK

    model, _ = io.load_checkpoint(io.CHECKPOINTS_DIR / "text_only_cpu_s0")
    near = BK._swap(model, TASK, (4, 8), 0, 200, seed=1)
    far = BK._swap(model, TASK, (4, 8), 96, 200, seed=1)
    assert far["n"] < near["n"] * 0.9  # fewer prompts answered correctly under the gap
