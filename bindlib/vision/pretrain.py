"""Pretraining the project encoders (``python -m bindlib pretrain-encoder --name project_cnn``).

The paper feeds its images through frozen ImageNet encoders.  Those weights cannot be
downloaded here, so the project pretrains two small encoders of its own and freezes them.

Objective: supervised per-patch prediction on rendered scenes of the task's vocabulary.
Scenes come from ``task.sample_batch`` contexts (default ``TaskConfig()`` vocabulary: 16 colours,
16 shapes) with a random N in 1..8, drawn by ``render.render_batch`` at the profile's canvas.
For every patch token the trunk outputs, two linear heads predict

    * the colour of the object that covers the patch, or "background";
    * the shape of that object, or "background".

"The object that covers the patch" is the one with the most shape pixels (coverage >= 0.5)
inside the patch.  A patch with no shape pixel at all is background.  A patch where the best
object has only a sliver (fewer than ``min_pixels`` pixels, default 16 of 256) is ambiguous:
it is left out of the loss and of the accuracies.  The loss is the sum of the two
cross-entropies.  Accuracy is reported on held-out scenes (a seed range never used for
training), over object patches only and over all labelled patches.

After training the heads are thrown away; the trunk is frozen and written with
``encoders.save_project_encoder`` (sha256-verified), with the objective, the steps, the
held-out accuracies and the provenance in encoder.json.  Training stops early once the
held-out object-patch accuracy reaches ``target`` for both colour and shape, or when the
time budget runs out; whatever was reached is recorded.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import encoders as E
from .render import RenderConfig, batch_objects, render_batch, shape_mask
from ..core.task import TaskConfig, sample_batch

IGNORE = -100  # label of ambiguous patches (F.cross_entropy's ignore_index)
EVAL_SEED = 1_000_003  # held-out scenes use this seed; training seeds are the step numbers

OBJECTIVE = (
    "supervised per-patch prediction on rendered task scenes (TaskConfig() vocabulary, N in 1..8): "
    "two linear heads on each patch token predict the colour and the shape of the object with the most "
    "shape pixels in the patch, or background; patches whose best object has fewer than min_pixels pixels "
    "are ignored; loss = CE(colour) + CE(shape); heads discarded, trunk frozen"
)


@dataclass
class PretrainConfig:
    name: str = "project_cnn"
    profile: str = "cpu"  # "cpu": 112 px canvas, 7x7 patches; "paper": 224 px, 14x14
    max_steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    n_range: tuple[int, int] = (1, 8)
    min_pixels: int = 16
    eval_every: int = 100
    eval_scenes: int = 512
    target: float = 0.95  # stop once held-out object-patch colour and shape accuracy both reach this
    time_budget_s: float = 300.0
    seed: int = 0
    task: dict = field(default_factory=lambda: TaskConfig().to_dict())
    net_config: dict | None = None  # None: the profile's config (encoders.project_config)

    def task_config(self) -> TaskConfig:
        return TaskConfig(**self.task)

    def render_config(self) -> RenderConfig:
        return E.render_config(self.name, self.profile)

    def net_cfg(self):
        base = E.project_config(self.name, self.profile)
        return type(base)(**self.net_config) if self.net_config else base

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_range"] = list(self.n_range)
        return d


# ---------------------------------------------------------------- labels
def patch_labels(batch, boxes, render_cfg: RenderConfig, patch: int, min_pixels: int = 16):
    """Per-patch colour and shape labels ``[B, T]`` (long) for rendered scenes.

    Classes are the vocabulary index (0..n-1) of the covering object's colour / shape,
    ``n`` for background, and IGNORE for a patch whose best object has only 1..min_pixels-1 pixels.
    """
    canvas, s = render_cfg.canvas_size, render_cfg.object_size
    side = canvas // patch
    vocab = batch.vocab
    B = len(batch)
    color_lab = np.full((B, side * side), vocab.n_colors, dtype=np.int64)
    shape_lab = np.full((B, side * side), vocab.n_shapes, dtype=np.int64)
    for i in range(B):
        n = int(batch.n_objects[i])
        if n == 0:
            continue
        _, specs = batch_objects(batch, i)
        pixels = np.zeros((n, canvas, canvas), dtype=np.int32)
        for k, ((x0, y0, _, _), spec) in enumerate(zip(boxes[i], specs)):
            pixels[k, y0:y0 + s, x0:x0 + s] = shape_mask(spec, s, render_cfg.supersample) >= 0.5
        counts = pixels.reshape(n, side, patch, side, patch).sum((2, 4)).reshape(n, -1)  # [n, T]
        best, most = counts.argmax(0), counts.max(0)
        obj_colors = batch.colors[i, :n].numpy() - vocab.color_offset
        obj_shapes = batch.shapes[i, :n].numpy() - vocab.shape_offset
        covered = most >= min_pixels
        sliver = (most > 0) & ~covered
        color_lab[i, covered] = obj_colors[best[covered]]
        shape_lab[i, covered] = obj_shapes[best[covered]]
        color_lab[i, sliver] = IGNORE
        shape_lab[i, sliver] = IGNORE
    return torch.from_numpy(color_lab), torch.from_numpy(shape_lab)


def make_scenes(cfg: PretrainConfig, n_scenes: int, seed: int, patch: int):
    """Render ``n_scenes`` scenes and their labels: (images, colour labels, shape labels)."""
    task, render_cfg = cfg.task_config(), cfg.render_config()
    batch = sample_batch(task, n_scenes, seed=seed, n=tuple(cfg.n_range))
    images, boxes = render_batch(batch, render_cfg, seed=seed)
    colors, shapes = patch_labels(batch, boxes, render_cfg, patch, cfg.min_pixels)
    return images, colors, shapes


# ---------------------------------------------------------------- model
def normalise(images: torch.Tensor) -> torch.Tensor:
    """The input scaling NetEncoder applies (encoders.HALF): 0..1 -> -1..1."""
    return (images - 0.5) / 0.5


class PatchClassifier(nn.Module):
    """The trunk (a ConvNet or SmallViT) plus the two per-patch heads used only for pretraining."""

    def __init__(self, net: nn.Module, n_colors: int, n_shapes: int):
        super().__init__()
        self.net = net
        self.color_head = nn.Linear(net.cfg.dim, n_colors + 1)  # + background
        self.shape_head = nn.Linear(net.cfg.dim, n_shapes + 1)

    def forward(self, images):
        tokens = self.net(normalise(images))
        return self.color_head(tokens), self.shape_head(tokens)


def objective(model: PatchClassifier, images, color_lab, shape_lab) -> torch.Tensor:
    color_logits, shape_logits = model(images)
    return (F.cross_entropy(color_logits.flatten(0, 1), color_lab.flatten(), ignore_index=IGNORE)
            + F.cross_entropy(shape_logits.flatten(0, 1), shape_lab.flatten(), ignore_index=IGNORE))


@torch.no_grad()
def patch_accuracy(model: PatchClassifier, images, color_lab, shape_lab, chunk: int = 128) -> dict:
    """Held-out per-patch accuracy: over object patches only, and over all labelled patches."""
    model.eval()
    dev = next(model.parameters()).device
    preds_c, preds_s = [], []
    for j in range(0, len(images), chunk):
        c, s = model(images[j:j + chunk].to(dev))
        preds_c.append(c.argmax(-1).cpu())
        preds_s.append(s.argmax(-1).cpu())
    model.train()
    pc, ps = torch.cat(preds_c), torch.cat(preds_s)
    n_colors = model.color_head.out_features - 1
    labelled = color_lab != IGNORE
    obj = labelled & (color_lab != n_colors)

    def acc(pred, lab, where):
        return round(float((pred[where] == lab[where]).float().mean()), 4)

    return {
        "color_object": acc(pc, color_lab, obj), "shape_object": acc(ps, shape_lab, obj),
        "color_all": acc(pc, color_lab, labelled), "shape_all": acc(ps, shape_lab, labelled),
        "both_object": round(float(((pc == color_lab) & (ps == shape_lab))[obj].float().mean()), 4),
        "object_patches": int(obj.sum()), "labelled_patches": int(labelled.sum()),
        "ignored_patches": int((~labelled).sum()),
    }


def _lr(step: int, cfg: PretrainConfig, elapsed: float = 0.0) -> float:
    """Linear warmup, then a cosine decay driven by whichever budget (steps or seconds) binds first."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = max((step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup), elapsed / cfg.time_budget_s)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pretrain(cfg: PretrainConfig, device="cpu", log=print):
    """Train trunk + heads; return (trunk, summary dict with history and held-out accuracies)."""
    device = torch.device(device)
    net_cfg = cfg.net_cfg()
    task = cfg.task_config()
    model = PatchClassifier(E.build_net(net_cfg, cfg.seed), task.n_colors, task.n_shapes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    held_out = make_scenes(cfg, cfg.eval_scenes, EVAL_SEED, net_cfg.patch)
    t0 = time.time()
    history, step, stopped = [], 0, "max_steps"
    acc = None
    while step < cfg.max_steps:
        images, colors, shapes = make_scenes(cfg, cfg.batch_size, cfg.seed * 10_000_019 + step, net_cfg.patch)
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg, time.time() - t0)
        loss = objective(model, images.to(device), colors.to(device), shapes.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        out_of_time = time.time() - t0 >= cfg.time_budget_s
        if step % cfg.eval_every == 0 or step == cfg.max_steps or out_of_time:
            acc = patch_accuracy(model, *held_out)
            history.append({"step": step, "loss": round(loss.item(), 4), "wall_seconds": round(time.time() - t0, 1),
                            **{k: v for k, v in acc.items() if not k.endswith("patches")}})
            log(f"step {step}: loss {loss.item():.3f}, held-out object patches colour {acc['color_object']:.3f} "
                f"shape {acc['shape_object']:.3f} ({time.time() - t0:.0f}s)")
            if acc["color_object"] >= cfg.target and acc["shape_object"] >= cfg.target:
                stopped = "target_reached"
                break
            if out_of_time:
                stopped = "time_budget"
                break
    summary = {"steps": step, "stopped": stopped, "wall_seconds": round(time.time() - t0, 1),
               "held_out": {**acc, "scenes": cfg.eval_scenes, "seed": EVAL_SEED}, "history": history}
    return model.net.cpu().eval(), summary
