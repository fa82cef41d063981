"""Vocabulary expansion, the paper's last curriculum stage: a trained model's 16 colours and 16 shapes
grow to the full 216-colour cube and 216-shape family, and training continues on the larger vocabulary.

    python -m bindlib expand-vocab --init-from data/checkpoints/text_only_cpu_s0 --seed 0

With 216 colours and shapes, prompts can hold up to 32 objects (the 32 items), so the expanded model is
evaluated at N = 2..24: ID 2..8, the usual OOD 9..16, and 17..24, a further length axis no 16-symbol
model can be asked about.

How the new embeddings start (our choice; the paper does not say): each new colour's input embedding and
unembedding row is the mean of the trained colours' rows plus Gaussian noise with their per-dimension
standard deviation (shapes likewise). So a new colour starts out looking like "some colour" to every layer
that reads colours, and distinct from the others; the trained rows keep their values, moved to their
places in the larger vocabulary.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..core import io
from ..core.evaluate import evaluate
from ..core.model import Transformer
from ..core.profiles import DEFAULT_POS_ENCODING, pos_setting
from ..core.task import SPECIALS, TaskConfig, Vocab
from ..training.train import Stage, TrainConfig, train

EXPANDED = dict(n_colors=216, n_shapes=216, n_items=32)
EXPANDED_OOD = (9, 24)  # evaluated as 9..16 (the usual OOD) and 17..24 (beyond every 16-symbol prompt)
EXPAND_SETTINGS = dict(steps=2000, batch_size=32, lr=5e-4, warmup=50, eval_every=250, eval_size=256, eval_per_n=256)


def _kinds(vocab: Vocab) -> dict[str, tuple[int, int]]:
    """Each token kind's (offset, count) in a vocabulary."""
    return {"colour": (vocab.color_offset, vocab.n_colors), "shape": (vocab.shape_offset, vocab.n_shapes),
            "item": (vocab.item_offset, vocab.n_items)}


def expand_rows(weight: torch.Tensor, old: Vocab, new: Vocab, gen: torch.Generator) -> torch.Tensor:
    """A [old.size, D] embedding (or unembedding) table as [new.size, D]: the specials and every trained
    row copied to its place, each new row the mean of its kind's trained rows plus noise of their spread."""
    out = torch.empty(new.size, weight.shape[1], dtype=weight.dtype)
    out[:len(SPECIALS)] = weight[:len(SPECIALS)]
    new_kinds = _kinds(new)
    for kind, (o_off, o_n) in _kinds(old).items():
        n_off, n_n = new_kinds[kind]
        if n_n < o_n:
            raise ValueError(f"the new vocabulary has {n_n} {kind}s, fewer than the model's {o_n}; expansion only grows.")
        rows = weight[o_off:o_off + o_n].float()
        mean, sd = rows.mean(0), rows.std(0) if o_n > 1 else torch.zeros(rows.shape[1])
        fresh = mean + sd * torch.randn(n_n - o_n, rows.shape[1], generator=gen)
        out[n_off:n_off + o_n] = weight[o_off:o_off + o_n]
        out[n_off + o_n:n_off + n_n] = fresh.to(weight.dtype)
    return out


def expand_vocab(model: Transformer, old: Vocab, new: Vocab, max_len: int, seed: int = 0) -> Transformer:
    """A copy of ``model`` whose token embedding and unembedding cover ``new`` (see the module docstring)."""
    if model.cfg.pos_encoding == "learned" and max_len > model.cfg.max_len:
        raise ValueError(f"the model learned positions 0..{model.cfg.max_len - 1} only, and prompts of the expanded "
                         f"task reach position {max_len - 1}; expand a RoPE model (the recipe's), or keep N <= 16.")
    gen = torch.Generator().manual_seed(seed)
    big = Transformer(dataclasses.replace(model.cfg, vocab_size=new.size, max_len=max_len))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state["embed.tok.weight"] = expand_rows(state["embed.tok.weight"], old, new, gen)
    if not model.cfg.tie_embeddings:
        state["unembed.weight"] = expand_rows(state["unembed.weight"], old, new, gen)
    if model.embed.pos is not None:  # same positions, a longer (untrained beyond the old end) table
        table = big.state_dict()["embed.pos.weight"].clone()
        table[:model.cfg.max_len] = state["embed.pos.weight"]
        state["embed.pos.weight"] = table
    big.load_state_dict(state, strict=False)
    return big


def checkpoint_vocab(meta: dict) -> Vocab:
    """The vocabulary a checkpoint was trained on (its train_config's task; defaults where not recorded)."""
    task = (meta.get("train_config") or {}).get("task") or {}
    default = Vocab()
    return Vocab(task.get("n_colors", default.n_colors), task.get("n_shapes", default.n_shapes),
                 task.get("n_items", default.n_items))


def expand_config(init_from: str, seed: int, device: str = "cpu", steps: int | None = None):
    """The TrainConfig of the expansion stage: packed two-hop queries on the expanded task, continuing
    ``init_from`` (a text or image-stage checkpoint; only its text model is used)."""
    s = dict(EXPAND_SETTINGS, steps=steps or EXPAND_SETTINGS["steps"])
    meta = io.read_checkpoint_meta(io.REPO_ROOT / init_from)
    pos = meta["model_config"].get("pos_encoding", DEFAULT_POS_ENCODING)
    fmt = ((meta.get("train_config") or {}).get("task") or {}).get("format", "standard")  # the ordered control stays ordered
    return TrainConfig(profile="cpu", task=TaskConfig(**EXPANDED, ood_range=EXPANDED_OOD,
                                                      **({"format": fmt} if fmt != "standard" else {})),
                       model=pos_setting(pos),
                       stages=[Stage("expand", s["steps"], {"two_hop": 1.0})], batch_size=s["batch_size"], lr=s["lr"],
                       warmup=s["warmup"], eval_every=s["eval_every"], eval_size=s["eval_size"], packed=True,
                       init_from=io.relpath(io.REPO_ROOT / init_from), seed=seed, device=device)


def split_means(by_n: dict) -> dict:
    """Mean accuracy over N 2..8, 9..16 and 17..24 from a results file's accuracy_by_n."""
    def mean(lo, hi):
        vals = [by_n[str(n)] for n in range(lo, hi + 1) if str(n) in by_n]
        return round(sum(vals) / len(vals), 4) if vals else None
    return {"id_accuracy": mean(2, 8), "ood_accuracy": mean(9, 16), "ood_17_24_accuracy": mean(17, 24)}


def run_expand(init_from: str, seed: int, device, command: str, commit: str, steps: int | None = None,
               overwrite: bool = False, progress: bool = True) -> tuple[str, dict]:
    """Expand, train, evaluate at N 2..24; returns the results name and record (the checkpoint is saved)."""
    t0 = time.time()
    cfg = expand_config(init_from, seed, str(device), steps)
    small, meta = io.load_checkpoint(io.REPO_ROOT / init_from)
    big = expand_vocab(small, checkpoint_vocab(meta), cfg.task_config().vocab, cfg.model_config().max_len, seed=seed)
    start = Path(init_from).name
    name = f"expand_{start}" + (f"_steps{steps}" if steps and steps != EXPAND_SETTINGS["steps"] else "")
    final = io.CHECKPOINTS_DIR / name
    for path in (final, io.RESULTS_DIR / f"{name}.json"):
        io.refuse_overwrite(path, overwrite)
    model, history = train(cfg, out_dir=Path("runs") / name, progress=progress,
                           log=None if progress else print, init_model=big)
    io.save_checkpoint(model, final, dtype=torch.bfloat16, meta={"train_config": cfg.to_dict(), "seed": seed,
                                                                 "init_from": cfg.init_from})
    result = evaluate(model, cfg.task_config(), per_n=EXPAND_SETTINGS["eval_per_n"], device=device)
    train_wall = history[-1]["wall_seconds"] if history else 0.0
    splits = split_means(result["accuracy_by_n"])
    record = {"kind": "vocab_expansion", "seed": seed, "init_from": cfg.init_from, "start": start,
              "vocab": EXPANDED, **result, **splits,
              "target": {"id_accuracy": 0.95}, "meets_target": bool(splits["id_accuracy"] >= 0.95),
              "steps": history[-1]["step"] if history else 0, "history": history,
              "checkpoint": io.relpath(final), "checkpoint_sha256": io.read_checkpoint_meta(final)["sha256"],
              "train_config": cfg.to_dict(),
              "provenance": io.provenance(command, device, time.time() - t0, commit=commit, train_seconds=train_wall)}
    return name, record


def add_command(sub) -> None:
    """Register ``expand-vocab``."""
    from .settings import positive_int

    ev = sub.add_parser("expand-vocab", help="vocabulary expansion: 216 colours and shapes, evaluated up to N = 24")
    ev.add_argument("--init-from", required=True, help="a text or image-stage checkpoint folder (RoPE)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--steps", type=positive_int, default=None, help=f"training steps (default {EXPAND_SETTINGS['steps']})")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(handler=cmd_expand)


def cmd_expand(args, command: str, device) -> int:
    import json

    name, record = run_expand(args.init_from, args.seed, device, command, io.git_commit(), steps=args.steps,
                              overwrite=args.overwrite, progress=not args.quiet)
    path = io.write_results(name, record)
    print(json.dumps({k: record[k] for k in ("id_accuracy", "ood_accuracy", "ood_17_24_accuracy", "meets_target")}))
    print(f"wrote {path}")
    return 0
