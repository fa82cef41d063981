"""Tiny random-initialised models of the registry's transformers classes, with a word-level tokenizer
over the task's words: the tests and the chapter's live demo run the whole pipeline on them, offline."""
from __future__ import annotations

import torch

from .models import ModelSpec, wrap
from .prompts import COLORS, ITEMS, SHAPES, template_words

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=None, eos_token_id=None,
                 pad_token_id=None, tie_word_embeddings=False)
MROPE = {"rope_type": "default", "mrope_section": [2, 3, 3]}


def tiny_configs(vocab_size: int) -> dict:
    """Tiny configs of every transformers class the registry uses whose code ships with transformers."""
    import transformers as T

    text = dict(TINY_TEXT, vocab_size=vocab_size)
    vit = dict(depth=1, hidden_size=16, out_hidden_size=64, num_heads=2, intermediate_size=32)
    out = {
        "Qwen2ForCausalLM": lambda: T.Qwen2Config(**text),
        "Qwen3ForCausalLM": lambda: T.Qwen3Config(**text, head_dim=16),
        "Qwen2VLForConditionalGeneration": lambda: T.Qwen2VLConfig(
            text_config=dict(text, rope_scaling=dict(MROPE, type="mrope")),
            vision_config=dict(depth=1, embed_dim=16, hidden_size=64, num_heads=2, mlp_ratio=2)),
        "Qwen2_5_VLForConditionalGeneration": lambda: T.Qwen2_5_VLConfig(
            text_config=dict(text, rope_scaling=dict(MROPE, type="mrope")), vision_config=vit),
        "Qwen3VLForConditionalGeneration": lambda: T.Qwen3VLConfig(
            text_config=dict(text, head_dim=16, rope_scaling=dict(MROPE, mrope_interleaved=True)),
            vision_config=dict(vit, deepstack_visual_indexes=[0])),
        # InternVL3's transformers-native class (the -hf checkpoints) around a Qwen2 language model
        "InternVLForConditionalGeneration": lambda: T.InternVLConfig(
            text_config=dict(text, model_type="qwen2"),
            vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)),
    }
    for name in ("InternLM3ForCausalLM",):  # modeling code shipped only by newer transformers
        if hasattr(T, name) and hasattr(T, "InternLM3Config"):
            out[name] = lambda: T.InternLM3Config(**text)
    return {k: v for k, v in out.items() if hasattr(T, k)}


def tiny_tokenizer():
    """A word-level fast tokenizer over the task's words (no download): real offsets, one token per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "[PAD]"] + template_words() + COLORS + SHAPES + ITEMS
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")


def tiny_model(hf_class: str = "Qwen3ForCausalLM", seed: int = 0, tokenizer=None):
    """(LanguageModel, tokenizer) of a tiny randomly initialised ``hf_class`` with the word-level tokenizer."""
    import transformers as T

    tokenizer = tokenizer or tiny_tokenizer()
    configs = tiny_configs(len(tokenizer))
    if hf_class not in configs:
        raise ValueError(f"no tiny config for {hf_class!r}: choose one of {', '.join(configs)}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = getattr(T, hf_class)(configs[hf_class]()).eval()
    return wrap(model, tokenizer), tokenizer


def load_tiny(spec: ModelSpec):
    """A tiny random-initialised model of ``spec``'s class, in ``load_local``'s format (tests only)."""
    lm, tok = tiny_model(spec.hf_class, seed=0)
    return lm, tok, {"hf_id": spec.hf_id, "revision": spec.revision, "resolved_commit": None, "dtype": "float32",
                     "mode": "tiny", "note": f"tiny random-initialised {spec.hf_class}, not the real model"}
