"""Chapter 8: the binding task in natural language on pretrained Hugging Face decoders (LLM/VLM pairs).

    prompts   the task in words, single-token vocabularies per tokenizer, offsets, interchange and rebind pairs
    models    the registry of pairs (HF id + revision) and three ways to get a model: local, NDIF, a clear error
    tiny      tiny random-initialised models of the same classes (tests, the chapter's live demo)
    run       the protocol through nnsight's LanguageModel: sites, patching, metrics, swap, retrieval
    results   reading pretrained_*.json back; the paper's reported numbers
    runs      ``python -m bindlib pretrained``

``from bindlib import pretrained as P`` gives the short-cut names below.
"""
from .models import PAIRS, ModelSpec, PairSpec, WeightsUnavailable, load_local, load_remote, pair  # noqa: F401
from .prompts import (COLORS, ITEMS, MAX_OBJECTS, MIN_OBJECTS, SHAPES, PromptPairs, Prompts, Words,  # noqa: F401
                      interchange_pairs, rebind_pairs, render, requery, sample_prompts, single_token_ids,
                      swapped_position_ids, token_index, template_words, vocabulary)
from .results import load_records, markdown_table, reported_rows, summary_rows  # noqa: F401
from .run import (correct_on_both, interchange, last_logits, measure, n_sites, patched_logits,  # noqa: F401
                  position_swap, retrieval, source_states, sweep)
from .runs import run_pair  # noqa: F401
from .tiny import load_tiny, tiny_configs, tiny_model, tiny_tokenizer  # noqa: F401
