"""``python -m bindlib pretrained``: chapter 8's measurements on one registered LLM/VLM pair.

    python -m bindlib pretrained --pair qwen3 --device cuda          # local GPU, bf16
    python -m bindlib pretrained --pair qwen3 --remote               # on NDIF (NDIF_API_KEY or --ndif-key)

Writes data/results/pretrained_<pair>.json with provenance.  Without the weights and without a
network it stops with one line naming the model and how to fetch it (exit status 2).
"""
from __future__ import annotations

import gc
import json
import shlex
import time
from pathlib import Path

import torch

from ..core import io
from .models import PAIRS, load_local, load_remote, pair, snapshot
from .results import summary_rows
from .run import _clean, measure
from .tiny import load_tiny


def add_parser(sub) -> None:
    pp = sub.add_parser("pretrained", help="binding measurements on a pretrained LLM/VLM pair (chapter 8)")
    pp.add_argument("--pair", required=True, choices=list(PAIRS))
    pp.add_argument("--device", default="cuda", help="torch device of a local run (default cuda)")
    pp.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    pp.add_argument("--remote", action="store_true", help="run on NDIF instead of a local device")
    pp.add_argument("--ndif-key", help="NDIF API key (default: the NDIF_API_KEY environment variable)")
    pp.add_argument("--no-download", action="store_true", help="use only weights already in the HF cache")
    pp.add_argument("--n-pairs", type=int, default=128, help="interchange and rebind pairs per model")
    pp.add_argument("--n-objects", type=int, default=16, help="objects per prompt of the pairs (10-40)")
    pp.add_argument("--retrieval-n", type=int, nargs="+", default=[10, 20, 30, 40],
                    help="object counts of the behavioural retrieval comparison")
    pp.add_argument("--retrieval-prompts", type=int, default=64)
    pp.add_argument("--swap-prompts", type=int, default=64)
    pp.add_argument("--all-pairs", action="store_true", help="keep pairs the model answers wrongly")
    pp.add_argument("--chunk", type=int, default=8, help="prompts per forward pass")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--results", help="results file name (default pretrained_<pair>)")
    pp.add_argument("--results-dir", help="results folder (default data/results)")
    pp.add_argument("--tiny", action="store_true", help="tiny random models of the same classes (tests only; "
                    "needs --results-dir)")


def cmd_pretrained(args, argv) -> int:
    spec = pair(args.pair)
    name = args.results or f"pretrained_{args.pair}"
    out = Path(args.results_dir or io.RESULTS_DIR) / f"{name}.json"
    if args.tiny and not args.results_dir:
        raise ValueError("--tiny runs are tests: pass --results-dir so that they never write into data/results.")
    if out.exists() and not args.overwrite:  # committed or not: only --overwrite replaces a results file
        raise FileExistsError(f"{io.relpath(out)} exists; pass --overwrite to replace it, or --results to write "
                              f"another file.")
    io.check_writable(out.parent)
    if not (args.remote or args.tiny):
        for mspec in (spec.llm, spec.vlm):  # fail before any work if a model cannot be had
            snapshot(mspec, allow_download=not args.no_download)
        from ..core.io import resolve_device

        resolve_device(args.device)
    record = run_pair(args.pair, device=args.device, remote=args.remote, api_key=args.ndif_key,
                      allow_download=not args.no_download, tiny=args.tiny, dtype=getattr(torch, args.dtype),
                      command="python -m bindlib " + " ".join(shlex.quote(a) for a in argv),
                      n_pairs=args.n_pairs, n_objects=args.n_objects, retrieval_ns=tuple(args.retrieval_n),
                      retrieval_prompts=args.retrieval_prompts, swap_prompts=args.swap_prompts,
                      only_correct=not args.all_pairs, seed=args.seed, chunk=args.chunk)
    io.atomic_write_json(out, record)
    for row in summary_rows([record]):
        print(json.dumps(row))
    print(f"wrote {out}")
    return 0


def run_pair(key: str, *, device="cuda", remote: bool = False, api_key: str | None = None,
             allow_download: bool = True, dtype=torch.bfloat16, command: str | None = None, tiny: bool = False,
             **kw) -> dict:
    """Measure both models of a registered pair, one after the other; the results-file record.

    ``tiny`` replaces each model by a tiny random-initialised one of the same class (tests only).
    """
    spec = pair(key)
    commit, t0 = io.git_commit(), time.perf_counter()
    mode = "tiny" if tiny else "ndif" if remote else "local"
    record = {"kind": "pretrained", "pair": key, "mode": mode, "seed": kw.get("seed", 0), "registry": spec.to_dict(),
              "settings": _clean(dict(kw)), "models": {}}
    for role, mspec in (("llm", spec.llm), ("vlm", spec.vlm)):
        if tiny:
            lm, tok, info = load_tiny(mspec)
        elif remote:
            lm, tok, info = load_remote(mspec, api_key)
        else:
            lm, tok, info = load_local(mspec, device, dtype, allow_download)
        record["models"][role] = {**info, **measure(lm, tok, remote=remote, name=mspec.hf_id, **kw)}
        del lm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    record["provenance"] = io.provenance(command, "cpu" if remote or tiny else device, time.perf_counter() - t0,
                                         commit=commit, mode=mode)
    return record
