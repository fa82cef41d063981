"""Training: AdamW with warmup + cosine decay, a staged curriculum, periodic evaluation,
early stopping, atomic checkpoints and exact resume.

Training is text first: noise steps re-lay out text prompts (bindlib.core.relayout). Image steps plug in
from the vision side: ``train(cfg, image_steps=bindlib.vision.featurepool.build_image_parts)`` builds the
encoder, adapter and feature pool there (an ImageSteps), and this module only calls them.

The data stream depends only on (seed, step), and the optimiser state is saved with
each checkpoint, so a run that is killed and resumed reproduces the uninterrupted run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..core import io
from ..core.evaluate import steps_to_reach  # noqa: F401 (re-exported)
from ..core.model import PROFILES, Transformer, ModelConfig, ModelOverrides, answer_logits, typed
from ..core.packing import HOP_TARGETS, hop_loss, pack_queries
from ..core.profiles import image_token_count
from ..core.relayout import VisionConfig, add_noise
from .state import resume_train_state, save_train_state
from ..core.task import QUERY_KINDS, Batch, TaskConfig, concat_batches, sample_batch, seeded


@dataclass
class Stage:
    """One curriculum stage: a mixture of query kinds over a range of N, for at most ``steps`` steps."""

    name: str
    steps: int
    mix: dict = field(default_factory=lambda: {"two_hop": 1.0})
    n_range: tuple | None = None  # None: the task's ID range
    hop_weight: float = 0.0  # weight of the deep supervision of the intermediate hop (TrainConfig.hop_layer)
    until: float | None = None  # leave early once two-hop ID accuracy reaches this
    image: float = 0.0  # share of this stage's steps that train on image-tokenized prompts (1.0: all)
    noise: float = 0.0  # share of steps whose text prompts get unattendable NOISE tokens (True: every text step)
    grounding: float = 0.0  # weight of the feature-grounding loss on image steps
    freeze: str | None = None  # "lm": train only the image adapter (LLaVA-style warm-up); None: everything
    lr_scale: float = 1.0  # this stage's learning rate is the schedule's times lr_scale

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"stage {self.name!r}: steps={self.steps} must be >= 1.")
        bad = set(self.mix) - set(QUERY_KINDS)
        if bad:
            raise ValueError(f"stage {self.name!r}: unknown query kinds {sorted(bad)}; allowed {QUERY_KINDS}.")
        if not self.mix or any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"stage {self.name!r}: mix weights must be >= 0 with a positive sum, got {self.mix}.")
        if self.n_range is not None:
            self.n_range = tuple(self.n_range)
        if not 0.0 <= self.image <= 1.0:
            raise ValueError(f"stage {self.name!r}: image={self.image} is a share of steps and must lie in 0..1.")
        if self.grounding < 0:
            raise ValueError(f"stage {self.name!r}: grounding weight {self.grounding} must be >= 0.")
        if self.freeze not in (None, "lm"):
            raise ValueError(f"stage {self.name!r}: freeze={self.freeze!r}; allowed None (train all) or 'lm'.")
        if self.lr_scale <= 0:
            raise ValueError(f"stage {self.name!r}: lr_scale={self.lr_scale} must be > 0.")
        self.noise = float(self.noise)
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"stage {self.name!r}: noise={self.noise} is a share of text steps and must lie in 0..1.")

    def is_image_step(self, step: int) -> bool:
        """Image steps are spread evenly: a share ``image`` of any run of consecutive steps."""
        return _spread(self.image, step)

    def is_noise_step(self, step: int) -> bool:
        """A share ``noise`` of all steps, spread the same way; an image step among them stays an image step."""
        return _spread(self.noise, step)


def _spread(share: float, step: int) -> bool:
    """Whether ``step`` is one of a share of steps spread evenly (exactly share * n of any n consecutive, rounded)."""
    return int((step + 1) * share) > int(step * share)


@dataclass
class TrainConfig:
    profile: str = "cpu"
    task: TaskConfig = field(default_factory=TaskConfig)  # (a dict of TaskConfig fields is converted)
    model: ModelOverrides = field(default_factory=ModelOverrides)  # of the profile's ModelConfig (a dict is converted)
    stages: list = field(default_factory=lambda: [Stage("two_hop", 3000)])
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_size: int = 512
    early_stop: float | None = 0.995
    packed: bool = False  # train on every object x query kind of each prompt at once (task.pack_queries)
    # Deep supervision of the intermediate hop (packed only): in stages with hop_weight > 0, the two-hop
    # query's residual after block ``hop_layer`` is read through the final LayerNorm and unembedding and
    # asked for the queried colour's shape (hop_target "slot": the queried slot, packing.hop_loss).
    hop_layer: int | None = None
    hop_target: str = field(default="shape", metadata={
        "choices": HOP_TARGETS, "help": "what deep supervision asks for: the shape (recipe) or the queried slot (_hopslot)"})
    declared_share: float = 0.0  # the shortcut dial: this share of prompts lists associations in declared order
    init_from: str | None = None  # start from this checkpoint's weights (e.g. a later curriculum stage)
    # Image and noise stages (VisionConfig; noise_width None pads every text context to the image-token count).
    vision: VisionConfig = field(default_factory=VisionConfig)
    cpu_bf16: bool = False  # bf16 autocast on the CPU too (a GPU always uses it); fp32 master weights
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        self.stages = [s if isinstance(s, Stage) else Stage(**s) for s in self.stages]
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}: allowed {sorted(PROFILES)}.")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= 1 and lr ({self.lr}) > 0.")
        self.task, self.vision, self.model = (typed(TaskConfig, self.task), typed(VisionConfig, self.vision),
                                              typed(ModelOverrides, self.model))
        self.model_config()  # validate the model overrides early
        if self.hop_target not in HOP_TARGETS or not 0.0 <= self.declared_share <= 1.0:
            raise ValueError(f"hop_target {self.hop_target!r} must be one of {HOP_TARGETS} and declared_share "
                             f"{self.declared_share} a share of prompts in 0..1.")
        if self.uses_images and not self.vision.encoder:
            raise ValueError("a stage trains on images, but TrainConfig.vision names no encoder; "
                             "set vision=VisionConfig(encoder=...), one of bindlib.core.profiles.ENCODERS.")

    @property
    def uses_images(self) -> bool:
        return any(s.image > 0 for s in self.stages)

    @property
    def noise_width(self) -> int:
        return self.vision.noise_width or image_token_count(self.vision.profile or self.profile)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def task_config(self) -> TaskConfig:
        return self.task

    def model_config(self) -> ModelConfig:
        task = self.task_config()
        return ModelConfig(vocab_size=task.vocab.size, max_len=task.max_len(offset=64),
                           **{**PROFILES[self.profile], **self.model.to_dict()})

    def to_dict(self) -> dict:
        """A JSON-normal dict (tuples become lists), so it compares equal to what model.json reads back."""
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        default_task = asdict(TaskConfig())
        d["task"] = {k: v for k, v in asdict(self.task).items() if v != default_task[k]}  # only what differs
        d["vision"] = self.vision.to_dict()
        d["model"] = self.model.to_dict()  # only what is set
        # fields added later are left out at their defaults, so earlier runs' saved configs (which resume
        # and the manifests compare) are unchanged
        for k, default in (("hop_target", "shape"), ("declared_share", 0.0), ("cpu_bf16", False)):
            if d[k] == default:
                d.pop(k)
        for st in d["stages"]:
            for k, default in (("freeze", None), ("lr_scale", 1.0)):
                if st[k] == default:
                    st.pop(k)
        return json.loads(json.dumps(d))


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.total_steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def stage_at(step: int, cfg: TrainConfig) -> tuple[int, Stage]:
    """The stage of a (curriculum-clock) step."""
    start = 0
    for i, s in enumerate(cfg.stages):
        if step < start + s.steps:
            return i, s
        start += s.steps
    return len(cfg.stages) - 1, cfg.stages[-1]


class ImageSteps(Protocol):
    """What image steps need besides the language model, built on the vision side from a TrainConfig and the model
    (bindlib.vision.featurepool.ImageParts): the trainable adapter, the step's image prompts, their grounding loss
    and the image accuracies of an evaluation."""

    adapter: torch.nn.Module

    def step_prompts(self, cfg: TrainConfig, stage: Stage, step: int, batch: Batch, seed: int):
        """The image prompts of ``step`` (with ``.batch``, and ``.embeds(adapter, length)`` for the model)."""

    def grounding(self, model, prompts, final_resid: torch.Tensor) -> torch.Tensor:
        """The unweighted grounding loss of these prompts."""

    def evaluate(self, model, task: TaskConfig, cfg: TrainConfig, device) -> dict:
        """The image entries of one evaluation record."""


def _prepare(batch: Batch, cfg: TrainConfig, stage: Stage, step: int, parts: ImageSteps | None):
    """Turn a sampled text batch into this step's input: image prompts, noised text, or the text itself."""
    seed = cfg.seed * 1_000_003 + step
    if stage.image > 0 and stage.is_image_step(step):
        if parts is None:
            raise ValueError(f"stage {stage.name!r} has image steps but no image parts were built.")
        prompts = parts.step_prompts(cfg, stage, step, batch, seed)
        return prompts.batch, prompts
    if stage.is_noise_step(step):
        return add_noise(batch, cfg.noise_width, seed=seed + 1, positions=cfg.vision.noise_positions), None
    return batch, None


def _forward(model, inputs: dict, prompts, parts, length: int, want_final: bool):
    if prompts is not None:
        inputs = {**inputs}
        inputs["inputs_embeds"], inputs["embeds_mask"] = prompts.embeds(parts.adapter, length)
    captured = {}
    handle = model.hook_resid_final.register_forward_hook(lambda m, i, o: captured.update(x=o)) if want_final else None
    try:
        logits = model(**inputs)
    finally:
        if handle is not None:
            handle.remove()
    return logits, captured.get("x")


def hop_head_for(cfg: TrainConfig, model) -> torch.nn.Module | None:
    """The train-time slot readout of deep supervision with hop_target 'slot' (None otherwise)."""
    if cfg.hop_target != "slot" or cfg.hop_layer is None or not any(s.hop_weight > 0 for s in cfg.stages):
        return None
    with seeded(cfg.seed + 29):
        return torch.nn.Linear(model.cfg.d_model, max(cfg.task_config().id_range[1], cfg.task_config().ood_range[1]))


def training_loss(model, cfg: TrainConfig, task: TaskConfig, stage: Stage, step: int, device,
                  parts: ImageSteps | None = None, hop_head: torch.nn.Module | None = None) -> torch.Tensor:
    """Cross-entropy on the answer token(s) of the batch for ``step`` (+ grounding on image steps)."""
    if not cfg.packed:
        batch, prompts = _prepare(training_batch(cfg, task, stage, step, device), cfg, stage, step, parts)
        ground = prompts is not None and stage.grounding > 0
        logits, final = _forward(model, batch.model_inputs(), prompts, parts, batch.tokens.shape[1], ground)
        loss = F.cross_entropy(logits[torch.arange(len(batch), device=device), batch.query_pos].float(), batch.target)
        return loss + _grounding(model, parts, prompts, final, stage)
    n_range = stage.n_range or task.id_range
    kinds = [k for k in QUERY_KINDS if stage.mix.get(k, 0) > 0]
    batch = sample_batch(task, cfg.batch_size, cfg.seed * 1_000_003 + step, n=tuple(n_range), device=device,
                         declared_share=cfg.declared_share)
    batch, prompts = _prepare(batch, cfg, stage, step, parts)
    packed = pack_queries(batch, kinds)
    mid = {}
    handle = None
    if stage.hop_weight > 0 and cfg.hop_layer is not None:
        handle = model.blocks[cfg.hop_layer].hook_resid_post.register_forward_hook(lambda m, i, o: mid.update(x=o))
    try:
        ground = prompts is not None and stage.grounding > 0
        logits, final = _forward(model, packed.model_inputs(), prompts, parts, packed.tokens.shape[1], ground)
    finally:
        if handle is not None:
            handle.remove()
    V = logits.shape[-1]
    picked = logits.gather(1, packed.readout_pos[..., None].expand(-1, -1, V))
    per_query = F.cross_entropy(picked.flatten(0, 1).float(), packed.target.flatten(), ignore_index=-100, reduction="none")
    weight = torch.tensor([stage.mix.get(k, 0.0) for k in QUERY_KINDS], device=device)[packed.kind.flatten()]
    weight = weight * (packed.target.flatten() >= 0)
    loss = (per_query * weight).sum() / weight.sum()
    if mid and stage.mix.get("two_hop", 0) > 0:
        loss = loss + stage.hop_weight * hop_loss(model, mid["x"], packed, batch.colors.shape[1], cfg.hop_target, hop_head)
    return loss + _grounding(model, parts, prompts, final, stage)


def _grounding(model, parts, prompts, final, stage: Stage):
    if prompts is None or stage.grounding <= 0:
        return 0.0
    return stage.grounding * parts.grounding(model, prompts, final)


def training_batch(cfg: TrainConfig, task: TaskConfig, stage: Stage, step: int, device) -> Batch:
    """The batch for ``step``: a deterministic function of (seed, step)."""
    total = sum(stage.mix.values())
    n_range = stage.n_range or task.id_range
    parts, given = [], 0
    kinds = [k for k in QUERY_KINDS if stage.mix.get(k, 0) > 0]
    for j, kind in enumerate(kinds):
        size = cfg.batch_size - given if j == len(kinds) - 1 else round(cfg.batch_size * stage.mix[kind] / total)
        given += size
        if size > 0:
            seed = (cfg.seed * 1_000_003 + step) * 7 + j
            parts.append(sample_batch(task, size, seed, n=(n_range[0], n_range[1]), query_kind=kind, device=device,
                                      declared_share=cfg.declared_share))
    return concat_batches(*parts) if len(parts) > 1 else parts[0]


@torch.no_grad()
def quick_accuracy(model, task: TaskConfig, kind: str, size: int, seed: int, device, n_range=None,
                   declared_share: float = 0.0, noise_width: int | None = None, noise_positions: str = "sequence") -> float:
    """Accuracy on fresh prompts of one query kind (with ``noise_width``: noised to that context width)."""
    model.eval()
    b = sample_batch(task, size, seed, n=n_range or task.id_range, query_kind=kind, device=device,
                     declared_share=declared_share)
    if noise_width:
        b = add_noise(b, noise_width, seed=seed + 1, positions=noise_positions)
    acc = (answer_logits(model, b).argmax(-1) == b.target).float().mean().item()
    model.train()
    return acc


def _extras(parts, hop_head) -> dict:
    """The train-time modules saved beside the model: the image adapter (None for text) and the slot head."""
    return {"adapter": parts.adapter if parts is not None else None, **({"hop_head": hop_head} if hop_head else {})}


def train(cfg: TrainConfig, out_dir: str | Path | None = None, resume: bool = True, progress: bool = True,
          log=print, with_parts: bool = False, init_model: Transformer | None = None,
          image_steps: Callable[[TrainConfig, Transformer, torch.device], ImageSteps | None] | None = None):
    """Train a model; return it with its history (one dict per evaluation), and with
    ``with_parts`` also its image parts (None for text-only configs).

    A config with image stages needs ``image_steps``, which builds them for the config and the model
    (bindlib.vision.featurepool.build_image_parts).

    With ``out_dir``, a checkpoint (model + optimiser + history) is written atomically at
    every evaluation, and a later call with the same out_dir resumes from it.
    """
    if cfg.uses_images and image_steps is None:
        raise ValueError("a stage trains on images, but train() was given no image_steps; pass "
                         "image_steps=bindlib.vision.featurepool.build_image_parts.")
    device = io.resolve_device(cfg.device)
    task = cfg.task_config()
    torch.manual_seed(cfg.seed)
    model = Transformer(cfg.model_config()).to(device)
    if init_model is not None:  # weights prepared by the caller (bindlib.experiments.expand: a grown vocabulary)
        model.load_state_dict(init_model.state_dict())
    elif cfg.init_from:
        start, _ = io.load_checkpoint(io.REPO_ROOT / cfg.init_from, device=device, expect=cfg.model_config().to_dict())
        model.load_state_dict(start.state_dict())
    parts = image_steps(cfg, model, device) if image_steps is not None else None
    hop_head = hop_head_for(cfg, model)
    hop_head = hop_head.to(device) if hop_head is not None else None
    params = [*model.parameters(), *(parts.adapter.parameters() if parts else []), *(hop_head.parameters() if hop_head else [])]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=tuple(cfg.betas))
    step, history, wall0 = 0, [], 0.0
    out = Path(out_dir) if out_dir else None
    if out and resume and (out / "model.json").exists():
        step, history, wall0 = resume_train_state(out, model, opt, cfg, device, _extras(parts, hop_head))
        if log:
            log(f"resumed from {out} at step {step}")
    stage_offset = history[-1].get("stage_offset", 0) if history else 0
    use_bf16 = device.type == "cuda" or cfg.cpu_bf16
    t0 = time.time() - wall0
    bar = None
    if progress:
        from tqdm import tqdm  # the text bar: a saved notebook keeps its final state (a widget would show 0%)
        bar = tqdm(total=cfg.total_steps, initial=step, desc="train", mininterval=1.0)
    model.train()
    done = bool(history and history[-1].get("stopped"))
    while step < cfg.total_steps and not done:
        stage_idx, stage = stage_at(step + stage_offset, cfg)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg) * stage.lr_scale
        model.requires_grad_(stage.freeze != "lm")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = training_loss(model, cfg, task, stage, step, device, parts, hop_head)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step % cfg.eval_every == 0 or step == cfg.total_steps:
            rec = {"step": step, "stage": stage.name, "loss": round(loss.item(), 4), "lr": lr_at(step - 1, cfg) * stage.lr_scale,
                   "wall_seconds": round(time.time() - t0, 1)}
            for j, kind in enumerate(QUERY_KINDS):
                rec[f"acc_{kind}"] = round(quick_accuracy(model, task, kind, cfg.eval_size, 10_000 + j, device), 4)
            if parts is not None:
                rec.update(parts.evaluate(model, task, cfg, device))
            if stage.n_range is not None:  # progress inside a curriculum stage
                rec["acc_stage_two_hop"] = round(quick_accuracy(model, task, "two_hop", cfg.eval_size, 20_000, device,
                                                                n_range=stage.n_range,
                                                                declared_share=cfg.declared_share), 4)
            if stage.noise:  # the noised task itself, beside the clean text above
                rec["acc_noise_two_hop"] = round(quick_accuracy(model, task, "two_hop", cfg.eval_size, 10_000, device,
                                                                noise_width=cfg.noise_width,
                                                                noise_positions=cfg.vision.noise_positions), 4)
            main = rec["acc_two_hop"]
            if cfg.declared_share > 0:  # the shortcut dial: "ID" is the training distribution, not shuffled prompts
                rec["acc_train_two_hop"] = main = round(quick_accuracy(
                    model, task, "two_hop", cfg.eval_size, 10_000, device, declared_share=cfg.declared_share), 4)
            is_last = stage_idx == len(cfg.stages) - 1
            if cfg.early_stop is not None and is_last and main >= cfg.early_stop:
                rec["stopped"] = "early_stop"
                done = True
            if stage.until is not None and main >= stage.until and not is_last:
                # leave this stage early: shift the stage clock to the next stage's start
                stage_end = sum(s.steps for s in cfg.stages[: stage_idx + 1])
                stage_offset = max(stage_offset, stage_end - step)
            rec["stage_offset"] = stage_offset
            history.append(rec)
            if log and not progress:
                log(json.dumps(rec))
            if out:
                save_train_state(out, model, opt, step, history, cfg, time.time() - t0, _extras(parts, hop_head))
    if bar is not None:
        bar.close()
    model.eval()
    model.requires_grad_(True)
    if parts is not None:
        parts.adapter.eval()
    return (model, history, parts) if with_parts else (model, history)
