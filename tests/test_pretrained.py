"""Chapter 8's pipeline, offline: tiny random-initialised configs of the registry's transformers classes,
built here with a word-level tokenizer (real offsets), so nothing is downloaded."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bindlib import pretrained as P
from bindlib import pretrained as R  # the protocol's names (bindlib.pretrained.run), kept apart for reading
from bindlib.book import pretrained as B
from bindlib.pretrained import PAIRS, tiny_configs, tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def words(tok):
    return P.vocabulary(tok, 40)


# ------------------------------------------------------------------ vocabulary and token bookkeeping
def test_vocabulary_is_single_token_and_disjoint(tok, words):
    assert words.size >= 40
    for ws, ids in ((words.colors, words.color_ids), (words.shapes, words.shape_ids), (words.items, words.item_ids)):
        for w, i in zip(ws, ids):
            assert tok(" " + w, add_special_tokens=False)["input_ids"] == [i]
    assert not (set(words.color_ids) & set(words.shape_ids)) and not (set(words.shape_ids) & set(words.item_ids))


def test_vocabulary_names_the_shortfall():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    small = Tokenizer(models.WordLevel({"[UNK]": 0, "red": 1, "blue": 2}, unk_token="[UNK]"))
    small.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t = PreTrainedTokenizerFast(tokenizer_object=small, unk_token="[UNK]")
    with pytest.raises(ValueError, match="single-token colors"):
        P.vocabulary(t, 10, "tiny")


def test_render_tracks_every_word_through_offsets(tok, words):
    g = torch.Generator().manual_seed(0)
    for n in (10, 40):
        p = P.sample_prompts(tok, words, 3, n, g)
        assert p.input_ids.shape[1] == len(tok(p.texts[0])["input_ids"])
        r = torch.arange(3)[:, None]
        assert torch.equal(p.input_ids[r, p.color_pos], p.colors)
        assert torch.equal(p.input_ids[r, p.shape_pos], p.shapes)
        assert torch.equal(p.input_ids[r, p.assoc_shape_pos], p.shapes)
        assert torch.equal(p.input_ids[r, p.assoc_item_pos], p.items)
        assert (p.color_pos < p.shape_pos).all() and (p.shape_pos.max(1).values < p.assoc_shape_pos.min(1).values).all()
        # association lines are in the order of ``lines``
        order = p.assoc_shape_pos.argsort(1).argsort(1)
        assert torch.equal(order, p.lines)
        for b in range(3):  # the answer is the item on the line of the queried colour's shape
            k = int(p.query_slot[b])
            colour = tok.decode([int(p.colors[b, k])]).strip()
            assert p.texts[b].endswith(f"what does the {colour} object hold? Answer: the {colour} object holds the")
            assert f"holds the {tok.decode([int(p.target[b])]).strip()}." in p.texts[b]
    with pytest.raises(ValueError, match="outside 10..40"):
        P.sample_prompts(tok, words, 1, 41, g)
    with pytest.raises(ValueError, match="outside 10..40"):
        P.sample_prompts(tok, words, 1, 9, g)


def test_token_index_rejects_a_word_split_in_two():
    with pytest.raises(ValueError, match="not exactly one token"):
        P.token_index([(0, 3), (3, 6)], 1, 5)
    assert P.token_index([(0, 3), (3, 7), (7, 8)], 4, 7) == 1  # a token with its leading space


def test_interchange_pairs(tok, words):
    pairs = P.interchange_pairs(tok, words, 16, 12, seed=1)
    b, s = pairs.base, pairs.source
    assert b.input_ids.shape == s.input_ids.shape
    t = torch.stack([pairs.positional, pairs.symbolic, pairs.reflexive, pairs.base_answer], 1)
    assert ((t[:, :, None] != t[:, None, :]).sum((1, 2)) == 12).all()  # four distinct targets
    # deranged: no colour is declared in its base slot; same set of objects
    assert (b.colors != s.colors).all()
    assert torch.equal(b.colors.sort(1).values, s.colors.sort(1).values)
    assert torch.equal(s.target, pairs.reflexive)  # the source's own answer is REF's item
    r = torch.arange(16)
    q_s = s.query_slot
    assert torch.equal(pairs.positional, b.items[r, q_s])  # base item at the source's query slot
    o = (b.colors == s.colors[r, q_s][:, None]).float().argmax(1)  # base object with the source's query colour
    assert torch.equal(pairs.symbolic, b.items[r, o])
    assert torch.equal(pairs.base_answer, b.target)
    # the last token is the same word at the same position in both
    assert torch.equal(b.input_ids[:, -1], s.input_ids[:, -1])


def test_rebind_pairs(tok, words):
    pairs = P.rebind_pairs(tok, words, 16, 10, seed=2)
    b, s = pairs.base, pairs.source
    assert torch.equal(b.colors, s.colors) and torch.equal(b.query_slot, s.query_slot)  # colours keep slots
    assert (b.shapes != s.shapes).all()  # re-paired with deranged shapes
    r, q = torch.arange(16), b.query_slot
    bound = (b.shapes == s.shapes[r, q][:, None]).float().argmax(1)
    assert torch.equal(pairs.symbolic, b.items[r, bound])
    assert torch.equal(s.target, pairs.reflexive)
    t = torch.stack([pairs.symbolic, pairs.reflexive, pairs.base_answer], 1)
    assert ((t[:, :, None] != t[:, None, :]).sum((1, 2)) == 6).all()


def test_swapped_position_ids(tok, words):
    p = P.sample_prompts(tok, words, 2, 10, torch.Generator().manual_seed(3))
    pid = P.swapped_position_ids(p, 0, 3)
    r = torch.arange(2)
    assert torch.equal(pid[r, p.color_pos[:, 0]], p.color_pos[:, 3])
    assert torch.equal(pid[r, p.shape_pos[:, 3]], p.shape_pos[:, 0])
    assert torch.equal(pid.sort(1).values, p.position_ids)  # a permutation of the positions
    assert (pid != p.position_ids).sum() == 8


# ------------------------------------------------------------------ the registry
def test_registry_covers_the_four_pairs():
    assert list(PAIRS) == ["qwen2", "qwen2.5", "qwen3", "internlm3"]
    shipped = tiny_configs(100)
    for spec in PAIRS.values():
        for m in (spec.llm, spec.vlm):
            assert m.hf_id.count("/") == 1 and m.revision
            if not m.remote_code:
                assert m.hf_class in shipped  # every class whose code ships in transformers is tested below
    assert PAIRS["qwen3"].reported["sym_pos_vlm"] == 2.463


# ------------------------------------------------------------------ patching identities on every class
@pytest.mark.parametrize("hf_class", sorted(tiny_configs(100)))
def test_patching_identities(hf_class, tok, words):
    lm, _ = tiny_model(hf_class, seed=0, tokenizer=tok)
    pairs = P.interchange_pairs(tok, words, 3, 10, seed=0)
    base, source = pairs.base, pairs.source
    clean_base, clean_source = R.last_logits(lm, base), R.last_logits(lm, source)
    # explicit 1-D position ids are the model's own (also for M-RoPE VLMs on text-only prompts)
    plain = lm._module(input_ids=base.input_ids).logits[:, -1].float()
    assert torch.allclose(plain, clean_base, atol=1e-5)
    n = R.n_sites(lm)
    assert n == 4
    own = R.source_states(lm, base)
    for site in range(n):  # source == base changes nothing
        assert torch.allclose(R.patched_logits(lm, base, own[site], site), clean_base, atol=1e-5)
    states = R.source_states(lm, source)
    # a full-residual patch after the last layer copies the source's answer
    assert torch.allclose(R.patched_logits(lm, base, states[n - 1], n - 1), clean_source, atol=1e-5)
    # at site 0 the last token is the same word at the same position in base and source: nothing changes
    assert torch.allclose(R.patched_logits(lm, base, states[0], 0), clean_base, atol=1e-5)
    # a middle site changes something (the patch reaches the output)
    assert not torch.allclose(R.patched_logits(lm, base, states[2], 2), clean_base, atol=1e-6)
    # the KV-cached sweep (the default for local runs) agrees with full patched passes at every site
    full, full_clean, _ = R.sweep(lm, pairs, cached=False)
    fast, fast_clean, _ = R.sweep(lm, pairs, cached=True)
    assert torch.allclose(fast, full, atol=1e-4) and torch.allclose(fast_clean, full_clean, atol=1e-4)
    swapped = R.last_logits(lm, base, P.swapped_position_ids(base, 0, 1))
    assert not torch.allclose(swapped, clean_base, atol=1e-6)  # position ids reach the attention


def test_measure_end_to_end_and_tables(tok, tmp_path):
    lm, _ = tiny_model("Qwen2ForCausalLM", seed=1, tokenizer=tok)
    m = R.measure(lm, tok, n_pairs=4, n_objects=10, retrieval_ns=(10, 12), retrieval_prompts=4, swap_prompts=4,
                  only_correct=False, chunk=4, name="tiny")
    ic = m["interchange"]
    assert m["n_sites"] == 4 and len(ic["per_site"]) == 4 and ic["n_pairs"] == 4
    for d in ic["per_site"] + m["rebind"]["per_site"]:
        assert abs(sum(d[k] for k in ("positional", "symbolic", "reflexive", "none", "other")) - 1) < 1e-3 \
            or d["positional"] == d["none"]  # rebind: positional is the base answer, counted twice
    assert m["position_swap"]["i"] == 0 and m["interchange_kept"] == 4
    assert [r["n_objects"] for r in m["retrieval"]] == [10, 12]
    json.dumps(m)  # JSON-clean
    record = {"kind": "pretrained", "pair": "qwen3", "models": {
        "llm": {"hf_id": "Qwen/Qwen3-8B", **m}, "vlm": {"hf_id": "Qwen/Qwen3-VL-8B-Instruct", **m}},
        "provenance": {"git_commit": "abc"}}
    assert B.summary_rows(B.load_records(tmp_path)) == []
    (tmp_path / "pretrained_qwen3.json").write_text(json.dumps(record))
    rows = B.summary_rows(B.load_records(tmp_path))
    assert [r["role"] for r in rows] == ["llm", "vlm"] and rows[0]["routing_site"] == ic["summary"]["routing_layer"]
    table = B.markdown_table(rows)
    assert table.startswith("| pair | model |") and "Qwen/Qwen3-VL-8B-Instruct" in table
    rep = B.reported_rows()
    assert [r["pair"] for r in rep] == ["qwen2", "qwen2.5", "qwen3"] and rep[2]["retrieval VLM"] == 0.76


def test_cli_offline_error_names_the_model(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "bindlib", "pretrained", "--allow-dirty", "--pair", "qwen3", "--device", "cuda",
                          "--results-dir", str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=120)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Qwen/Qwen3-8B" in lines[0] and "huggingface-cli download" in lines[0]
    assert not list(tmp_path.glob("*.json"))


def test_rebind_exercise_checker():
    B.check_rebind_predictions(B.rebind_solution, n_pairs=10)
    wrong = lambda base, source: {**B.rebind_solution(base, source), "bound_shape": "key"}  # noqa: E731
    with pytest.raises(AssertionError, match="expected"):
        B.check_rebind_predictions(wrong, n_pairs=10)


def _trained_tokenizer(kind: str):
    """A subword tokenizer trained here on the task's words: byte-level BPE (like Qwen's) or a
    SentencePiece-style Metaspace BPE (like InternLM's), so offsets include boundary markers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None if kind == "bytelevel" else "<unk>"))
    if kind == "bytelevel":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tk.decoder = decoders.Metaspace()
        alphabet = []
    corpus = [" ".join(P.template_words() + P.COLORS + P.SHAPES + P.ITEMS + ["The " + w for w in P.SHAPES])] * 3
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=2000, initial_alphabet=alphabet,
                                                       special_tokens=["<unk>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")


@pytest.mark.parametrize("kind", ["bytelevel", "metaspace"])
def test_bookkeeping_with_subword_tokenizers(kind):
    t = _trained_tokenizer(kind)
    w = P.vocabulary(t, 10, kind)
    pairs = P.interchange_pairs(t, w, 4, 10, seed=0)
    p = pairs.base
    r = torch.arange(4)[:, None]
    assert torch.equal(p.input_ids[r, p.color_pos], p.colors) and torch.equal(p.input_ids[r, p.assoc_item_pos], p.items)
    for b in range(4):  # decoding the tracked tokens gives the words of the text
        text = p.texts[b]
        assert f"holds the {t.decode([int(p.target[b])]).strip()}." in text
    assert pairs.source.input_ids.shape == p.input_ids.shape


def test_cli_tiny_run_writes_a_record_with_provenance(tmp_path, capsys):
    from bindlib.__main__ import main

    args = ["pretrained", "--allow-dirty", "--pair", "qwen3", "--tiny", "--n-pairs", "3", "--n-objects", "10", "--retrieval-n", "10",
            "--retrieval-prompts", "3", "--swap-prompts", "3", "--all-pairs", "--chunk", "3"]
    assert main(args) == 2  # no --results-dir: refused, nothing written
    assert "--results-dir" in capsys.readouterr().err
    assert main(args + ["--results-dir", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "pretrained_qwen3.json").read_text())
    assert rec["mode"] == "tiny" and rec["seed"] == 0 and rec["provenance"]["command"].startswith("python -m bindlib pretrained")
    assert {"git_commit", "device", "wall_seconds"} <= set(rec["provenance"])
    assert rec["models"]["vlm"]["hf_id"] == "Qwen/Qwen3-VL-8B-Instruct" and rec["models"]["vlm"]["n_sites"] == 4
    rows = B.summary_rows(B.load_records(tmp_path))
    assert [r["role"] for r in rows] == ["llm", "vlm"]
    assert main(args + ["--results-dir", str(tmp_path)]) == 2  # an existing file is not overwritten without --overwrite


def test_remote_needs_a_key(monkeypatch):
    from bindlib.pretrained import WeightsUnavailable, load_remote

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(WeightsUnavailable, match="NDIF_API_KEY"):
        load_remote(PAIRS["qwen3"].llm)


def _fake_hub_cache(hf_home: Path, spec, hf_class: str, sha: str) -> None:
    """A Hugging Face cache holding a tiny model saved under ``spec``'s id, as a download would leave it."""
    repo = hf_home / "hub" / ("models--" + spec.hf_id.replace("/", "--"))
    lm, tok = tiny_model(hf_class, seed=0)
    lm._module.save_pretrained(repo / "snapshots" / sha)
    tok.save_pretrained(repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / spec.revision).write_text(sha)


def test_cli_local_run_from_the_hub_cache(tmp_path):
    """The local path end to end (cache lookup, from_pretrained, tokenizer, LanguageModel), offline."""
    spec = PAIRS["qwen3"]
    _fake_hub_cache(tmp_path / "hf", spec.llm, spec.llm.hf_class, "a" * 40)
    _fake_hub_cache(tmp_path / "hf", spec.vlm, spec.vlm.hf_class, "b" * 40)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "bindlib", "pretrained", "--allow-dirty", "--pair", "qwen3", "--device", "cpu",
                          "--dtype", "float32", "--results-dir", str(tmp_path), "--n-pairs", "2", "--n-objects", "10",
                          "--retrieval-n", "10", "--retrieval-prompts", "2", "--swap-prompts", "2", "--all-pairs"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rec = json.loads((tmp_path / "pretrained_qwen3.json").read_text())
    assert rec["mode"] == "local"
    assert rec["models"]["llm"]["resolved_commit"] == "a" * 40 and rec["models"]["vlm"]["resolved_commit"] == "b" * 40
    assert rec["models"]["vlm"]["n_sites"] == 4 and rec["models"]["llm"]["interchange"]["n_pairs"] == 2


REMOTE_SCRIPT = """
import torch
from bindlib import pretrained as P
for role in ("llm", "vlm"):
    lm, tok, info = P.load_remote(getattr(P.PAIRS["qwen3"], role), "dummy-key")
    assert next(lm._module.parameters()).device.type == "meta" and info["mode"] == "ndif"
    prompts = P.sample_prompts(tok, P.vocabulary(tok, 10), 2, 10, torch.Generator().manual_seed(0))
    print(role, type(lm._module).__name__, tuple(P.last_logits(lm, prompts).shape))  # a local trace loads the weights
"""


def test_ndif_model_construction_offline(tmp_path):
    """load_remote builds the meta model and tokenizer the NDIF path traces (here traced locally, offline)."""
    spec = PAIRS["qwen3"]
    _fake_hub_cache(tmp_path / "hf", spec.llm, spec.llm.hf_class, "a" * 40)
    _fake_hub_cache(tmp_path / "hf", spec.vlm, spec.vlm.hf_class, "b" * 40)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "llm Qwen3ForCausalLM" in out.stdout and "vlm Qwen3VLForConditionalGeneration" in out.stdout
    with pytest.raises(P.WeightsUnavailable, match="only locally"):
        P.load_remote(PAIRS["internlm3"].vlm, "dummy-key")
