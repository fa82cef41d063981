"""A fixed pool of rendered scenes and their frozen-encoder features, computed once per encoder.

An image step used to render 32 scenes and run the frozen encoder on them; on two CPU cores that
is a third of the step. With a pool, image steps draw scenes from the pool instead (epochs over
it, a fresh permutation per epoch) and sample only the text parts of each prompt afresh: the
items, the association order and the query (laid out by ``task.build_prompts``). No step renders
or encodes. Evaluation keeps rendering fresh scenes, so what the pool size costs in
generalisation is measured, not assumed (``image_accuracy`` on fresh scenes against
``FeaturePool.accuracy`` on pool scenes).

A pool is identified by a sha over everything that decides its contents: the encoder's signature
(its weights' sha256), the render config, the task config, the pool size and seed. It lives
outside git, in ``runs/feature_pools/<encoder>_<sha>.safetensors`` (features in bf16), and is
rebuilt when missing; a file whose stored key differs is never trusted.

    pool = load_or_build_pool(vision, task, size=4096, seed=0)
    prompts = pool.prompts(task, pool.indices(step, 32), seed=step)   # ImagePrompts, as Vision.prompts gives
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..core.io import atomic_write
from ..core.profiles import REPO_ROOT

POOL_DIR = REPO_ROOT / "runs" / "feature_pools"
POOL_VERSION = 1  # bump when the pool's layout or sampling changes


def pool_key(vision, task, size: int, seed: int) -> str:
    """The sha (16 hex digits) of everything that decides a pool's contents."""
    spec = {"version": POOL_VERSION, "encoder": vision.encoder.signature, "render": asdict(vision.render_cfg),
            "patch": vision.patch, "task": task.to_dict(), "size": int(size), "seed": int(seed),
            "n_range": list(task.id_range)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FeaturePool:
    features: torch.Tensor  # [P, T, D] (bf16 as stored)
    n_objects: torch.Tensor  # [P]
    colors: torch.Tensor  # [P, Nmax] vocab ids, -1 padded
    shapes: torch.Tensor  # [P, Nmax]
    object_patches: torch.Tensor  # [P, Nmax, T] bool
    key: str
    seed: int
    positions: str = "sequence"  # the image tokens' position ids (vision.multimodal.relayout_context)
    tokens: str = "all"  # which patches are tokens (vision.multimodal.ImagePrompts.with_tokens)

    def __len__(self) -> int:
        return self.features.shape[0]

    def indices(self, step: int, batch_size: int) -> torch.Tensor:
        """The pool rows of ``step``: slots step*B .. step*B+B-1 of an endless stream of epochs,
        each epoch a fresh permutation of the pool (a deterministic function of (seed, step))."""
        P = len(self)
        slots = torch.arange(step * batch_size, (step + 1) * batch_size)
        out = torch.empty(batch_size, dtype=torch.long)
        for epoch in slots.div(P, rounding_mode="floor").unique().tolist():
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * epoch + 1)
            perm = torch.randperm(P, generator=g)
            here = slots // P == epoch
            out[here] = perm[slots[here] % P]
        return out

    def prompts(self, task, idx, seed: int, query_kind: str = "two_hop", device="cpu"):
        """ImagePrompts over pool scenes ``idx``, with freshly sampled items, association order and query."""
        from ..core.task import build_prompts, make_generator
        from ..core.relayout import context_start, relayout_context
        from .multimodal import ImagePrompts

        idx = torch.as_tensor(idx, dtype=torch.long)
        n, colors, shapes = self.n_objects[idx], self.colors[idx], self.shapes[idx]
        B, nmax = colors.shape
        voc = task.vocab
        g = make_generator(seed, "cpu")
        items = torch.rand(B, voc.n_items, generator=g).argsort(-1)[:, :nmax] + voc.item_offset
        valid = torch.arange(nmax)[None, :] < n[:, None]
        line_of = torch.rand(B, nmax, generator=g).masked_fill(~valid, 2.0).argsort(-1).argsort(-1)
        q_slot = (torch.rand(B, generator=g) * n).long()
        b = build_prompts(voc, colors, shapes, items, line_of, q_slot, n, 0, query_kind,
                          {"split": "id", "n_range": tuple(task.id_range), "association_order": "shuffled"})
        T = self.features.shape[1]
        img = relayout_context(b, T, "image", positions=self.positions).to(device)
        return ImagePrompts(img, self.features[idx].to(device, torch.float32), self.object_patches[idx].to(device),
                            context_start(b)).with_tokens(self.tokens)

    def step_prompts(self, task, stage, step: int, batch_size: int, seed: int, device="cpu"):
        """The image prompts of training step ``step`` (a stage asking for other N than the pool's fails)."""
        if tuple(stage.n_range or task.id_range) != tuple(task.id_range):
            raise ValueError(f"stage {stage.name!r} asks for N in {stage.n_range}, but the feature pool holds ID "
                             f"scenes ({task.id_range}); drop the stage's n_range or the pool (vision pool_size).")
        return self.prompts(task, self.indices(step, batch_size), seed, device=device)

    @torch.no_grad()
    def accuracy(self, model, adapter, task, size: int = 256, seed: int = 40_000, device="cpu") -> float:
        """Two-hop accuracy on pool scenes (fresh text parts): set beside fresh-scene accuracy."""
        was = model.training
        model.eval()
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:size]
        p = self.prompts(task, idx, seed, device=device)
        logits = model(**p.model_inputs(adapter))
        pred = logits[torch.arange(len(idx), device=logits.device), p.batch.query_pos].argmax(-1)
        model.train(was)
        return (pred == p.batch.target).float().mean().item()


def pool_for(vision, settings, task) -> FeaturePool | None:
    """The pool a TrainConfig's ``vision`` settings (a VisionConfig) ask for, or None."""
    if not settings.pool_size:
        return None
    pool = load_or_build_pool(vision, task, int(settings.pool_size), int(settings.pool_seed))
    # not part of the stored features: choices of how to lay them out
    pool.positions, pool.tokens = settings.image_positions, settings.image_tokens
    return pool


@dataclass
class ImageParts:
    """What image steps need besides the language model (bindlib.training.train.ImageSteps): a Vision (frozen
    encoder + renderer), the adapter, and the feature pool when the config asks for one."""

    vision: object
    adapter: torch.nn.Module
    pool: FeaturePool | None = None

    def step_prompts(self, cfg, stage, step: int, batch, seed: int):
        """The image prompts of training step ``step``: fresh scenes of ``batch``, or pool scenes."""
        if self.pool is None:
            return self.vision.prompts(batch, seed)
        return self.pool.step_prompts(cfg.task_config(), stage, step, len(batch), seed, batch.tokens.device)

    def grounding(self, model, prompts, final_resid: torch.Tensor) -> torch.Tensor:
        """Both directions of feature grounding (vision.grounding), summed."""
        from .grounding import grounding_loss

        g = grounding_loss(model, self.adapter, prompts, final_resid)
        return g["to_words"] + g["to_region"]

    def evaluate(self, model, task, cfg, device) -> dict:
        """Image accuracy on fresh scenes (and on pool scenes), and the time spent rendering and encoding."""
        from .multimodal import image_accuracy

        size = min(cfg.eval_size, 256)
        rec = {"acc_image_two_hop": round(image_accuracy(model, self.adapter, self.vision, task, size, 30_000, device), 4),
               "encoder_seconds": round(self.vision.seconds, 1)}
        if self.pool is not None:
            rec["acc_image_pool_two_hop"] = round(self.pool.accuracy(model, self.adapter, task, size, device=device), 4)
        return rec


def build_image_parts(cfg, model, device) -> ImageParts | None:
    """The image parts of a TrainConfig (None when no stage uses images): the ``image_steps`` of training."""
    from .multimodal import ImageAdapter, Vision

    if not cfg.uses_images:
        return None
    vision = Vision.for_profile(cfg.vision.encoder, cfg.vision.profile or cfg.profile, cfg.vision.image_positions,
                                cfg.vision.image_tokens)
    vision.encoder.to(device)
    torch.manual_seed(cfg.seed + 17)
    adapter = ImageAdapter(vision.dim, model.cfg.d_model).to(device)
    return ImageParts(vision, adapter, pool_for(vision, cfg.vision, cfg.task_config()))


def pool_path(vision, key: str, directory=None) -> Path:
    return Path(directory or POOL_DIR) / f"{vision.encoder.name}_{key}.safetensors"


def build_pool(vision, task, size: int, seed: int, chunk: int = 128, log=None) -> FeaturePool:
    """Render ``size`` ID scenes (N in task.id_range) from ``seed`` and encode them once."""
    from ..core.task import sample_batch
    from .render import patch_grid, render_batch

    if size < 1:
        raise ValueError(f"pool size {size} must be >= 1.")
    b = sample_batch(task, size, seed=seed * 7 + 3, n=tuple(task.id_range))
    feats, obj = [], torch.zeros(size, b.colors.shape[1], vision.n_tokens, dtype=torch.bool)
    t0 = time.time()
    for start in range(0, size, chunk):
        part = b.select(torch.arange(start, min(size, start + chunk)))
        images, boxes = render_batch(part, vision.render_cfg, seed=seed * 1_000_003 + start)
        feats.append(vision.encoder.encode(images.to(vision.encoder.device)).to("cpu", torch.bfloat16))
        for i, bx in enumerate(boxes):
            for k, patches in enumerate(patch_grid(bx, vision.render_cfg.canvas_size, vision.patch)):
                obj[start + i, k, torch.as_tensor(patches)] = True
        if log:
            log(f"pool: {min(size, start + chunk)}/{size} scenes ({time.time() - t0:.0f}s)")
    features = torch.cat(feats)
    if features.shape[1] != vision.n_tokens:
        raise ValueError(f"encoder {vision.encoder.name} gave {features.shape[1]} tokens, expected {vision.n_tokens}.")
    return FeaturePool(features, b.n_objects.clone(), b.colors.clone(), b.shapes.clone(), obj,
                       pool_key(vision, task, size, seed), seed)


def save_pool(pool: FeaturePool, path: Path, meta: dict) -> None:
    from safetensors.torch import save as st_save

    tensors = {"features": pool.features.contiguous(), "n_objects": pool.n_objects, "colors": pool.colors,
               "shapes": pool.shapes, "object_patches": pool.object_patches.to(torch.uint8)}
    atomic_write(path, st_save(tensors, metadata={"key": pool.key, "seed": str(pool.seed),
                                                  **{k: str(v) for k, v in meta.items()}}))


def load_pool(path: Path, key: str) -> FeaturePool | None:
    """The pool stored at ``path`` if its key matches; None if missing or made from something else."""
    from safetensors import safe_open

    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("key") != key:
            return None
        t = {k: f.get_tensor(k) for k in f.keys()}
    return FeaturePool(t["features"], t["n_objects"], t["colors"], t["shapes"], t["object_patches"].bool(), key,
                       int(meta["seed"]))


def load_or_build_pool(vision, task, size: int, seed: int = 0, directory=None, log=None) -> FeaturePool:
    """The pool of (encoder, render config, task, size, seed): read from disk, else built and saved."""
    key = pool_key(vision, task, size, seed)
    path = pool_path(vision, key, directory)
    pool = load_pool(path, key)
    if pool is not None:
        return pool
    t0 = time.time()
    pool = build_pool(vision, task, size, seed, log=log)
    save_pool(pool, path, {"encoder": vision.encoder.signature, "size": size,
                           "build_seconds": round(time.time() - t0, 1)})
    if log:
        log(f"pool: wrote {path} ({time.time() - t0:.0f}s)")
    return pool


# ---------------------------------------------------------------- what the frozen features allow
def oracle_ceiling(vision, task, n_train: int = 1024, n_test: int = 512, steps: int = 300, lr: float = 0.05,
                   seed: int = 0) -> dict:
    """The ceiling a frozen encoder puts on image two-hop accuracy, read by an oracle.

    Linear colour and shape heads are fitted on each object's region feature (the mean of its
    patches' features, standardised) on ``n_train`` scenes; on ``n_test`` fresh scenes the oracle
    answers every (scene, queried object) as a perfect reader of those features would: it picks the
    object whose region gives the query colour the highest probability, then reads that region's
    shape (the association lines, in text, then name the item without error). Returns the
    per-object colour/shape accuracies and ``two_hop_ceiling``, the share answered right.
    """
    import torch.nn as nn
    import torch.nn.functional as F

    def regions(pool):
        cover = pool.object_patches.float()
        feats = (cover @ pool.features.float()) / cover.sum(-1, keepdim=True).clamp(min=1)  # [P, Nmax, D]
        valid = pool.colors >= 0
        return feats, valid

    voc = task.vocab
    train_pool = build_pool(vision, task, n_train, seed=10_000 + seed)
    test_pool = build_pool(vision, task, n_test, seed=20_000 + seed)
    x_tr, v_tr = regions(train_pool)
    x_te, v_te = regions(test_pool)
    mean, std = x_tr[v_tr].mean(0), x_tr[v_tr].std(0) + 1e-6
    heads = {}
    for what, labels, offset, n_cls in (("color", train_pool.colors, voc.color_offset, voc.n_colors),
                                        ("shape", train_pool.shapes, voc.shape_offset, voc.n_shapes)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = nn.Linear(x_tr.shape[-1], n_cls)
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-3)
        x, y = (x_tr[v_tr] - mean) / std, labels[v_tr] - offset
        for _ in range(steps):
            loss = F.cross_entropy(head(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        heads[what] = head
    with torch.no_grad():
        z = (x_te - mean) / std
        logp_color = heads["color"](z).log_softmax(-1)  # [P, Nmax, C]
        shape_pred = heads["shape"](z).argmax(-1) + voc.shape_offset
    colors, shapes = test_pool.colors, test_pool.shapes
    q = (colors - voc.color_offset).clamp(min=0)  # each object in turn is the queried one
    # score[p, k, j] = log p(query colour of object k | region j)
    score = logp_color.gather(-1, q[:, None, :].expand(-1, colors.shape[1], -1)).transpose(1, 2)
    score = score.masked_fill(~v_te[:, None, :], float("-inf"))
    picked = score.argmax(-1)  # [P, Nmax]
    k = torch.arange(colors.shape[1])[None].expand_as(picked)
    found = picked == k
    answer_ok = shape_pred.gather(1, picked) == shapes
    color_pred = logp_color.argmax(-1) + voc.color_offset
    return {"color_object": round(float((color_pred == colors)[v_te].float().mean()), 4),
            "shape_object": round(float((shape_pred == shapes)[v_te].float().mean()), 4),
            "both_object": round(float(((color_pred == colors) & (shape_pred == shapes))[v_te].float().mean()), 4),
            "found_queried_object": round(float(found[v_te].float().mean()), 4),
            "two_hop_ceiling": round(float((answer_ok & v_te)[v_te].float().mean()), 4),
            "train_scenes": n_train, "test_scenes": n_test, "queries": int(v_te.sum())}
