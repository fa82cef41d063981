"""The measurement protocol of ``bindlib.interp`` on pretrained decoders, through nnsight's LanguageModel.

Sites.  Site l < n_layers is the residual stream entering decoder layer l (``layers[l].input``);
site n_layers is the residual leaving the last layer (``layers[-1].output``, before the final norm),
where a last-token patch copies the source's answer exactly (the positive control).  Only the last
token is patched: the source's vectors at every site are read in one pass, then each site is one
patched pass over the bases.  ``remote=True`` runs every trace on NDIF.

Metrics are ``bindlib.interp``'s (``iia_metrics``, ``routing_summary``, ``binding_score``), computed on
the logits of the base's in-context items, so a 150k-token vocabulary never has to be kept per site.
"""
from __future__ import annotations

import inspect
import math
import time
from types import SimpleNamespace

import torch

from ..interp.patching import binding_score, iia_metrics, routing_summary
from .prompts import (PromptPairs, Prompts, interchange_pairs, rebind_pairs, requery,
                         sample_prompts, swapped_position_ids, vocabulary)
from .models import decoder_layers_path, envoy_at


def _layers(lm):
    return envoy_at(lm, decoder_layers_path(lm._module))


def n_sites(lm) -> int:
    return len(_layers(lm)._module) + 1


def _hidden(x):
    return x[0] if isinstance(x, tuple) else x  # decoder layers return a tensor (transformers 5) or a tuple


def _inputs(lm, prompts: Prompts, position_ids=None) -> dict:
    """Model inputs on the model's device; only the last position's logits are computed where the
    class supports it (a 150k-token vocabulary over every position would dominate memory)."""
    dev = next(lm._module.parameters()).device
    dev = torch.device("cpu") if dev.type == "meta" else dev  # a remote (NDIF) model lives on the meta device here
    out = {k: v.to(dev) for k, v in prompts.model_inputs(position_ids).items()}
    if "logits_to_keep" in inspect.signature(lm._module.forward).parameters:
        out["logits_to_keep"] = 1
    return out


@torch.no_grad()
def last_logits(lm, prompts: Prompts, position_ids=None, remote: bool = False) -> torch.Tensor:
    """Next-token logits [B, V] (float, CPU) at the last token."""
    with lm.trace(**_inputs(lm, prompts, position_ids), remote=remote):
        out = lm.output.logits[:, -1].save()
    return out.float().cpu()


@torch.no_grad()
def source_states(lm, prompts: Prompts, remote: bool = False) -> torch.Tensor:
    """The last token's residual at every site, [n_sites, B, D]."""
    layers = _layers(lm)
    n = len(layers._module)
    saved = []
    with lm.trace(**_inputs(lm, prompts), remote=remote):
        for layer in range(n):
            saved.append(layers[layer].input[:, -1].save())
        saved.append(_hidden(layers[n - 1].output)[:, -1].save())
    return torch.stack([s.cpu() for s in saved])


@torch.no_grad()
def patched_logits(lm, base: Prompts, states: torch.Tensor, site: int, remote: bool = False) -> torch.Tensor:
    """Last-token logits [B, V] of the bases with the last token's residual at ``site`` set to ``states`` [B, D]."""
    layers = _layers(lm)
    n = len(layers._module)
    with lm.trace(**_inputs(lm, base), remote=remote):
        if site < n:
            resid = layers[site].input
        else:
            resid = _hidden(layers[n - 1].output)
        resid[:, -1] = states.to(resid.device, resid.dtype)
        out = lm.output.logits[:, -1].save()
    return out.float().cpu()


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield torch.arange(start, min(start + size, n))


def _item_view(pairs: PromptPairs):
    """``pairs`` seen over its in-context items: token ids become item indices 0..N-1."""
    items = pairs.base.items

    def index(t):
        return (items == t[:, None]).float().argmax(-1)

    n = items.shape[1]
    return SimpleNamespace(base=SimpleNamespace(items=torch.arange(n).expand_as(items)),
                           **{k: index(getattr(pairs, k)) for k in ("positional", "symbolic", "reflexive", "base_answer")})


@torch.no_grad()
def correct_on_both(lm, pairs: PromptPairs, chunk: int = 8, remote: bool = False) -> torch.Tensor:
    """[M] bool: the full-vocabulary argmax is right on the base and on the source."""
    hit = []
    for idx in _chunks(len(pairs), chunk):
        p = pairs.select(idx)
        hit.append((last_logits(lm, p.base, remote=remote).argmax(-1) == p.base.target)
                   & (last_logits(lm, p.source, remote=remote).argmax(-1) == p.source.target))
    return torch.cat(hit)


def _cache_kw(module) -> str:
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"  # renamed in recent transformers


@torch.no_grad()
def cached_last_token(lm, base: Prompts, states: torch.Tensor | None, sites) -> torch.Tensor:
    """Last-token logits [B, S(+1), V] with the residual at each site patched, reusing the prefix's KV cache.

    Patching touches only the last token, so everything before it is the clean base's: run the prefix
    once with a cache, then one single-token pass per site (the cache is cropped back after each).
    ``states`` None gives the clean logits [B, V].  Local runs only (a cache cannot live on NDIF).
    """
    module = lm._module
    dev = next(module.parameters()).device
    ids, pid = base.input_ids.to(dev), base.position_ids.to(dev)
    B, L = ids.shape
    key = _cache_kw(module)
    out = module(input_ids=ids[:, :-1], attention_mask=torch.ones(B, L - 1, dtype=torch.long, device=dev),
                 position_ids=pid[:, :-1], use_cache=True)
    cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    step = {"input_ids": ids[:, -1:], "attention_mask": torch.ones(B, L, dtype=torch.long, device=dev),
            "position_ids": pid[:, -1:], key: cache, "use_cache": True}
    layers = _layers(lm)
    n = len(layers._module)
    saved = []
    for site in ([None] if states is None else sites):
        with lm.trace(**step):
            if site is not None:
                resid = layers[site].input if site < n else _hidden(layers[n - 1].output)
                resid[:, -1] = states[site].to(resid.device, resid.dtype)
            logits = lm.output.logits[:, -1].save()
        cache.crop(-1)
        saved.append(logits.float().cpu())
    return saved[0] if states is None else torch.stack(saved, 1)


@torch.no_grad()
def sweep(lm, pairs: PromptPairs, chunk: int = 8, remote: bool = False, sites=None, cached: bool | None = None):
    """Item logits of every patched site [M, S, N] and of the clean bases [M, N].

    ``cached`` (default: on for local runs) reuses the base prefix's KV cache, so a site costs one
    single-token pass instead of a full one; the tests check that both ways agree.
    """
    sites = list(range(n_sites(lm))) if sites is None else list(sites)
    cached = (not remote) if cached is None else cached
    patched, clean = [], []
    for idx in _chunks(len(pairs), chunk):
        p = pairs.select(idx)
        states = source_states(lm, p.source, remote)
        items = p.base.items
        if cached:
            clean.append(cached_last_token(lm, p.base, None, sites).gather(-1, items))
            per_site = cached_last_token(lm, p.base, states, sites)
            patched.append(per_site.gather(-1, items[:, None, :].expand(-1, len(sites), -1)))
        else:
            clean.append(last_logits(lm, p.base, remote=remote).gather(-1, items))
            patched.append(torch.stack([patched_logits(lm, p.base, states[s], s, remote).gather(-1, items)
                                        for s in sites], 1))
    return torch.cat(patched), torch.cat(clean), sites


def interchange(lm, pairs: PromptPairs, chunk: int = 8, remote: bool = False) -> dict:
    """IIA of POS/SYM/REF per site, BS, and the routing summary (Sym/Pos at the routing site)."""
    t0 = time.perf_counter()
    patched, clean, sites = sweep(lm, pairs, chunk, remote)
    view = _item_view(pairs)
    per_site = [dict(site=s, **iia_metrics(patched[:, j], clean, view)) for j, s in enumerate(sites)]
    out = {"kind": pairs.kind, "n_pairs": len(pairs), "n_objects": pairs.base.n_objects, "sites": sites,
           "per_site": per_site, "wall_seconds": time.perf_counter() - t0}
    if pairs.kind == "interchange":
        out["summary"] = routing_summary(per_site, sites)
    return out


@torch.no_grad()
def position_swap(lm, tokenizer, words, prompts: Prompts, i: int = 0, j: int = 1, remote: bool = False,
                  chunk: int = 8) -> dict:
    """Swap only the position ids of objects i and j's colour and shape tokens; ask about object i.

    POS predicts the answer flips to i_j, SYM that it stays i_i (rows answered correctly unswapped count).
    """
    b = requery(tokenizer, words, prompts, i)
    clean, swapped = [], []
    for idx in _chunks(len(b), chunk):
        p = b.select(idx)
        clean.append(last_logits(lm, p, remote=remote).gather(-1, p.items).argmax(-1))
        swapped.append(last_logits(lm, p, swapped_position_ids(p, i, j), remote).gather(-1, p.items).argmax(-1))
    clean, swapped = torch.cat(clean), torch.cat(swapped)
    keep = clean == i
    n = int(keep.sum())
    rate = (lambda hit: float((hit & keep).sum()) / n) if n else (lambda hit: float("nan"))
    flip, stay = rate(swapped == j), rate(swapped == i)
    return {"i": i, "j": j, "n": n, "clean_accuracy": float(keep.float().mean()), "flip_rate": flip,
            "stay_rate": stay, "other_rate": 1.0 - flip - stay if n else float("nan")}


@torch.no_grad()
def retrieval(lm, tokenizer, words, ns=(10, 20, 30, 40), n_prompts: int = 64, seed: int = 0, chunk: int = 8,
              remote: bool = False) -> list[dict]:
    """The behavioural comparison: accuracy (full-vocabulary argmax) on the task by number of objects."""
    g = torch.Generator().manual_seed(int(seed) + 101)
    rows = []
    for n in ns:
        prompts = sample_prompts(tokenizer, words, n_prompts, n, g)
        hit = torch.cat([last_logits(lm, prompts.select(idx), remote=remote).argmax(-1) == prompts.target[idx]
                         for idx in _chunks(n_prompts, chunk)])
        rows.append({"n_objects": n, "n_prompts": n_prompts, "tokens": prompts.input_ids.shape[1],
                     "accuracy": float(hit.float().mean())})
    return rows


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    return x


def measure(lm, tokenizer, *, n_pairs: int = 128, n_objects: int = 16, retrieval_ns=(10, 20, 30, 40),
            retrieval_prompts: int = 64, swap_prompts: int = 64, only_correct: bool = True, seed: int = 0,
            chunk: int = 8, remote: bool = False, name: str = "model") -> dict:
    """Every measurement of chapter 8 on one model: interchange, rebind, position swap, retrieval."""
    words = vocabulary(tokenizer, max(n_objects, *retrieval_ns), name)
    out = {"n_sites": n_sites(lm), "vocabulary_sizes": {"colors": len(words.colors), "shapes": len(words.shapes),
                                                        "items": len(words.items)}}
    for kind, make in (("interchange", interchange_pairs), ("rebind", rebind_pairs)):
        pool = make(tokenizer, words, n_pairs * (3 if only_correct else 1), n_objects, seed)
        ok = correct_on_both(lm, pool, chunk, remote) if only_correct else torch.ones(len(pool), dtype=torch.bool)
        pairs = pool.select(ok.nonzero().squeeze(1)[:n_pairs])
        out[f"{kind}_candidates"], out[f"{kind}_kept"] = len(pool), len(pairs)
        out[kind] = interchange(lm, pairs, chunk, remote) if len(pairs) else None
    swap_base = sample_prompts(tokenizer, words, swap_prompts, n_objects, torch.Generator().manual_seed(seed + 3))
    out["position_swap"] = position_swap(lm, tokenizer, words, swap_base, 0, 1, remote, chunk)
    out["retrieval"] = retrieval(lm, tokenizer, words, retrieval_ns, retrieval_prompts, seed, chunk, remote)
    return _clean(out)
