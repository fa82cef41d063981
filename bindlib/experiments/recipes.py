"""Training recipes: the curriculum and settings each profile uses by default, and named variants.

Trained directly, the two-hop task sits on a loss plateau that outlasts a CPU budget
(chapter 2). The recipe breaks it in four stages, all with packed queries (every object of a
prompt asked under every query kind in one pass):

1. ``subskills``: the two-hop query together with its one-hop parts (colour -> shape,
   shape -> item) on prompts with few objects, so each hop forms with its own gradient;
2. ``compose``: the same, plus deep supervision: a middle layer of the two-hop query is asked
   for the intermediate shape, which puts hop one's result where hop two can read it;
3. ``full_n``: the same on the full ID range of N;
4. ``two_hop``: the task alone, without aids, until ID accuracy reaches 99.5%.

The five training regimes of the headline table and where their checkpoints and results live.

Every regime shares stage 1 (the text recipe, bindlib.experiments.recipes) and differs in what follows it:

- ``text_only``: stage 1 alone (the committed text checkpoints);
- ``text_only_matched``: stage 1, then more text for as many steps as the image regimes add
  (the compute-matched control the paper lacked);
- ``noise_text``: stage 1, then text with unattendable NOISE tokens for those steps;
- ``image_text``: stage 1, then the image stage (with feature grounding), then 20% image / 80% text;
- ``noise_image_text``: as image_text, with noise in every text batch after stage 1.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core import io
from ..core.evaluate import evaluate, mean_sd
from ..core.profiles import (DEFAULT_POS_ENCODING, IMAGE_REGIMES, MAIN_ENCODER, NOISE_REGIMES, OOD_ACCURACY, PAPER_ROW,  # noqa: F401
                             RECIPE, REGIME, REGIMES, TASK, TABLE_ENCODERS, check_profile, check_regime, checkpoint_dir,
                             pos_setting, pos_suffix, run_tag)
from ..core.task import TaskConfig, sample_batch
from ..training.train import Stage, TrainConfig, train
from ..vision.grounding import grounding_accuracy
from ..core.relayout import VisionConfig
from ..vision.featurepool import build_image_parts
from ..vision.multimodal import image_accuracy, load_image_model, save_adapter

SUBSKILL_MIX = {"two_hop": 1.0, "color_to_shape": 1.0, "shape_to_item": 1.0}

SMALL_N = (2, 3)


def curriculum(steps: tuple, hop_weight: float = 1.0, subskills: bool = True, small_n: bool = True) -> list[Stage]:
    mix = dict(SUBSKILL_MIX) if subskills else {"two_hop": 1.0}
    first_n = SMALL_N if small_n else None
    return [
        Stage("subskills", steps[0], dict(mix), n_range=first_n),
        Stage("compose", steps[1], dict(mix), n_range=first_n, hop_weight=hop_weight),
        Stage("full_n", steps[2], dict(mix), hop_weight=hop_weight),
        Stage("two_hop", steps[3], {"two_hop": 1.0}),
    ]


def recipe(profile: str = "cpu", seed: int = 0, device: str = "cpu", steps_scale: float = 1.0, *,
           task_format: str = "standard", hop_target: str = "shape", hop_layer: int | None = None,
           declared_share: float = 0.0, **aids) -> TrainConfig:
    """The default text-only training config of a profile; ``aids`` switch parts of the curriculum off.

    The keyword arms (the recipe's controls; all default to the recipe): ``task_format`` ('ordered': the
    positional positive control, task.FORMATS), ``hop_target`` ('slot': deep supervision asks for the
    queried object's slot instead of its shape), ``hop_layer`` (which block's output deep supervision
    reads) and ``declared_share`` (the shortcut dial: this share of training prompts lists its
    associations in declaration order).
    """
    s = RECIPE[check_profile(profile)]
    steps = tuple(max(1, int(n * steps_scale)) for n in s["steps"])
    cfg = TrainConfig(profile=profile, stages=curriculum(steps, **aids), batch_size=s["batch_size"], lr=s["lr"],
                      warmup=s["warmup"], min_lr_frac=1.0, eval_every=s["eval_every"], packed=True,
                      hop_layer=s["hop_layer"] if hop_layer is None else hop_layer, seed=seed, device=device,
                      hop_target=hop_target, declared_share=declared_share,
                      task={**TASK[profile], **({"format": task_format} if task_format != "standard" else {})})
    if s.get("leave_at"):  # the profile's stage budgets are ceilings
        for st in cfg.stages[:-1]:
            st.until = s["leave_at"]
    n_layers = cfg.model_config().n_layers
    if not 0 <= cfg.hop_layer < n_layers:
        raise ValueError(f"hop_layer={cfg.hop_layer} is outside the {profile} model's blocks 0..{n_layers - 1}.")
    return cfg


def arm_suffix(task_format: str = "standard", hop_target: str = "shape", hop_weight: float | None = None,
               hop_layer: int | None = None, declared_share: float | None = None) -> str:
    """The name suffix of a recipe arm (empty for the recipe itself), so no arm overwrites another's files:
    ``_ordered``, ``_hopslot``, ``_hopw0``, ``_hopl2``, ``_decl090`` (declared share 0.90; any given share,
    0 included, is named), combined in this order."""
    parts = [task_format] if task_format != "standard" else []
    parts += [f"hop{hop_target}"] if hop_target != "shape" else []
    parts += [f"hopw{hop_weight:g}".replace(".", "p")] if hop_weight is not None else []
    parts += [f"hopl{hop_layer}"] if hop_layer is not None else []
    parts += [f"decl{round(100 * declared_share):03d}"] if declared_share is not None else []
    return "".join(f"_{x}" for x in parts)


def arm_recipe(profile: str, seed: int, device: str, steps_scale: float = 1.0, format: str = "standard",
               hop_target: str = "shape", hop_weight: float | None = None, hop_layer: int | None = None,
               declared_share: float | None = None) -> tuple[TrainConfig, str]:
    """The recipe with the arms given (None: the recipe's choice) and its name suffix (``arm_suffix``).
    The ordered format trains without deep supervision unless ``hop_weight`` says otherwise: its shape
    target is not on the only route there."""
    hop_weight = hop_weight if hop_weight is not None else (0.0 if format == "ordered" else None)
    arms = {k: v for k, v in (("task_format", format), ("hop_target", hop_target), ("hop_layer", hop_layer),
                              ("declared_share", declared_share), ("hop_weight", hop_weight))
            if v not in (None, "standard", "shape")}  # only what differs from the recipe
    cfg = recipe(profile, seed=seed, device=device, steps_scale=steps_scale, **arms)
    return cfg, arm_suffix(format, hop_target, None if format == "ordered" and hop_weight == 0.0 else hop_weight,
                           hop_layer, declared_share)


# Named variants for the learning-curve comparison (python -m bindlib curve --variant NAME).
VARIANTS = {
    "direct": {"about": "the two-hop query alone, full ID range, one query per prompt (the naive baseline)"},
    "no_deep_supervision": {"about": "the recipe without deep supervision of the intermediate hop"},
    "no_subskills": {"about": "the recipe without the one-hop sub-skill queries"},
    "recipe": {"about": "the full recipe"},
}


def variant(name: str, profile: str = "cpu", seed: int = 0, device: str = "cpu", steps: int | None = None) -> TrainConfig:
    """A variant of the recipe, with the same total step budget (``steps`` overrides it)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}: allowed {sorted(VARIANTS)}.")
    base = recipe(profile, seed=seed, device=device)
    scale = (steps or base.total_steps) / base.total_steps
    aids = {"no_deep_supervision": {"hop_weight": 0.0}, "no_subskills": {"subskills": False}}.get(name, {})
    cfg = recipe(profile, seed=seed, device=device, steps_scale=scale, **aids)
    if name == "direct":
        cfg.packed = False
        cfg.stages = [Stage("two_hop", cfg.total_steps, {"two_hop": 1.0})]
    cfg.early_stop = None  # curves run their whole budget, so variants compare at equal steps
    return cfg


# ---------------------------------------------------------------- the stages after stage 1
# Steps added after the text recipe. Image regimes: an image stage then a 20% image / 80% text mix;
# text regimes get the same total as more text (compute-matched).
IMAGE_SHARE = 0.2  # of the mix stage
# The image stage asks both queries that read the picture (shape_to_item never looks at it).
IMAGE_STAGE_MIX = {"two_hop": 1.0, "color_to_shape": 1.0}
GROUNDING_WEIGHT = 1.0


def regime_stages(regime: str, profile: str = "cpu", grounding: bool = True, steps_scale: float = 1.0) -> list:
    s = REGIME[profile]
    n_img, n_mix = (max(1, int(s[k] * steps_scale)) for k in ("image_steps", "mix_steps"))
    noise = regime in NOISE_REGIMES
    if regime in ("text_only_matched", "noise_text"):
        return [Stage("more_text", n_img + n_mix, {"two_hop": 1.0}, noise=noise)]
    if regime in IMAGE_REGIMES:
        return [Stage("image", n_img, dict(IMAGE_STAGE_MIX), image=1.0, noise=noise,
                      grounding=GROUNDING_WEIGHT if grounding else 0.0),
                Stage("mix", n_mix, {"two_hop": 1.0}, image=IMAGE_SHARE, noise=noise)]
    raise ValueError(f"regime {regime!r} has no stages after the text recipe (it is the text recipe).")


def stage1_dir(seed: int, profile: str = "cpu", pos_encoding: str = DEFAULT_POS_ENCODING, hop_target: str = "shape") -> Path:
    """The text_only checkpoint every regime of (seed, positional encoding, hop target) starts from: the
    folder ``train --pos-encoding X --hop-target Y`` writes."""
    path = checkpoint_dir("text_only", seed, profile)
    return path.with_name(path.name + pos_suffix(pos_encoding) + arm_suffix(hop_target=hop_target))


def stage1_config(seed: int, profile: str = "cpu", device: str = "cpu", pos_encoding: str = DEFAULT_POS_ENCODING,
                  hop_target: str = "shape") -> TrainConfig:
    """The text recipe that makes ``stage1_dir`` (as ``train`` runs it with those flags)."""
    cfg = recipe(profile, seed=seed, device=device, hop_target=hop_target)
    if pos_encoding != DEFAULT_POS_ENCODING:
        cfg.model = cfg.model.replace(pos_encoding=pos_encoding)
    return cfg


def regime_config(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None, device: str = "cpu",
                  grounding: bool = True, steps_scale: float = 1.0, pos_encoding: str = DEFAULT_POS_ENCODING, hop_target: str = "shape"):
    """The TrainConfig that continues the text_only checkpoint of ``seed`` (``pos_encoding``, ``hop_target``) into
    ``regime``; the hop target only names the start (the stages after the recipe have no deep supervision)."""
    check_regime(regime)
    pos_suffix(pos_encoding)  # validates
    s = REGIME[check_profile(profile)]
    vision = VisionConfig(profile=profile, encoder=(encoder or MAIN_ENCODER) if regime in IMAGE_REGIMES else None)
    return TrainConfig(profile=profile, stages=regime_stages(regime, profile, grounding, steps_scale),
                       batch_size=s["batch_size"], lr=s["lr"], warmup=s["warmup"], min_lr_frac=0.1,
                       eval_every=s["eval_every"], eval_size=s["eval_size"], early_stop=None, packed=True,
                       init_from=io.relpath(stage1_dir(seed, profile, pos_encoding, hop_target)), vision=vision, seed=seed,
                       device=device, model=pos_setting(pos_encoding),
                       hop_target=hop_target)


def planned_runs(profile: str, seeds, regimes=REGIMES, encoders=None, grounding_ablation_seeds=()) -> list[dict]:
    """Every (regime, seed, encoder, grounding) run of the table, text regimes first."""
    encoders = list(encoders or [MAIN_ENCODER])
    runs = []
    for seed in seeds:
        for regime in regimes:
            check_regime(regime)
            if regime in IMAGE_REGIMES:
                runs += [dict(regime=regime, seed=seed, encoder=e, grounding=True) for e in encoders]
            else:
                runs.append(dict(regime=regime, seed=seed, encoder=None, grounding=True))
    for seed in grounding_ablation_seeds:
        runs.append(dict(regime="image_text", seed=seed, encoder=MAIN_ENCODER, grounding=False))
    return runs


def run_suffix(run: dict, steps_scale: float = 1.0) -> str:
    """What sets a run apart from its table row: another positional encoding or hop target (its start), no
    grounding, or a scaled step budget (exploratory)."""
    scaled = steps_scale != 1.0 and run["regime"] != "text_only"  # text_only trains nothing here
    return (pos_suffix(run.get("pos_encoding", DEFAULT_POS_ENCODING)) + arm_suffix(hop_target=run.get("hop_target", "shape"))
            + ("" if run.get("grounding", True) else "_nogrounding")
            + (f"_steps{steps_scale:g}x" if scaled else ""))


def results_name(run: dict, profile: str, steps_scale: float = 1.0) -> str:
    return f"regime_{run_tag(run['regime'], run['seed'], profile, run['encoder'])}{run_suffix(run, steps_scale)}"


def checkpoint_for(run: dict, profile: str, steps_scale: float = 1.0) -> Path:
    path = checkpoint_dir(run["regime"], run["seed"], profile, run["encoder"])
    return path.with_name(path.name + run_suffix(run, steps_scale))


# ---------------------------------------------------------------- running one row of the table
def _evaluate_images(model, adapter, vision, task, device, per_n: int = 128, seed: int = 777) -> dict:

    by_n = {str(n): round(image_accuracy(model, adapter, vision, task, per_n, seed + n, device, n_range=(n, n)), 4)
            for n in range(task.id_range[0], task.id_range[1] + 1)}
    prompts = vision.prompts(sample_batch(task, 256, seed, device=device), seed)
    return {"image_id_accuracy": round(sum(by_n.values()) / len(by_n), 4), "image_accuracy_by_n": by_n,
            "grounding_accuracy": {k: round(v, 4) for k, v in grounding_accuracy(model, adapter, prompts).items()}}


def _stage1(seed: int, profile: str, device, progress: bool, pos_encoding: str = DEFAULT_POS_ENCODING, hop_target: str = "shape"):
    """The text_only checkpoint of ``seed`` (``pos_encoding``, ``hop_target``); trained first if it is missing."""
    path = stage1_dir(seed, profile, pos_encoding, hop_target)
    if not (path / "model.json").exists():
        cfg = stage1_config(seed, profile, str(device), pos_encoding, hop_target)
        model, history = train(cfg, out_dir=f"runs/{path.name}", progress=progress)
        io.save_checkpoint(model, path, dtype=torch.bfloat16,
                           meta={"train_config": cfg.to_dict(), "regime": "text_only", "profile": profile, "seed": seed,
                                 "steps": history[-1]["step"] if history else 0})
    return path


def run_regime(run: dict, profile: str, device, command: str, commit: str, progress: bool = True,
               steps_scale: float = 1.0) -> dict:
    """Train (or, for text_only, load) one run, save its checkpoint, evaluate it, return its results record."""
    t0 = time.time()
    regime, seed, encoder, pos_encoding = run["regime"], run["seed"], run["encoder"], run.get("pos_encoding", DEFAULT_POS_ENCODING)
    hop_target = run.get("hop_target", "shape")
    stage1 = _stage1(seed, profile, device, progress, pos_encoding, hop_target)
    final = checkpoint_for(run, profile, steps_scale)
    parts, history, cfg = None, [], None
    if regime == "text_only":
        model, meta = io.load_checkpoint(stage1, device=device)
        train_config = meta.get("train_config")
    else:
        cfg = regime_config(regime, seed, profile, encoder, str(device), run.get("grounding", True), steps_scale,
                            pos_encoding, hop_target)
        run_dir = Path("runs") / final.name
        model, history, parts = train(cfg, out_dir=run_dir, progress=progress, log=None if progress else print,
                                      with_parts=True, image_steps=build_image_parts)
        meta = {"train_config": cfg.to_dict(), "regime": regime, "profile": profile, "seed": seed, "encoder": encoder,
                "grounding": run.get("grounding", True), "init_from": io.relpath(stage1),
                "steps": history[-1]["step"] if history else 0}
        if parts is not None:
            meta["adapter"] = save_adapter(parts.adapter, final)
            meta.update(encoder_id=parts.vision.encoder.weights_id, encoder_dim=parts.vision.dim)
        io.save_checkpoint(model, final, dtype=torch.bfloat16, meta=meta)
        model, _ = io.load_checkpoint(final, device=device)  # report the committed bf16 weights
        train_config = cfg.to_dict()
    task = TrainConfig(**train_config).task_config() if train_config else TaskConfig()
    record = {"kind": "regime", "regime": regime, "encoder": encoder, "profile": profile, "seed": seed,
              "grounding": run.get("grounding", True) if regime in IMAGE_REGIMES else None,
              "steps_scale": steps_scale if regime != "text_only" else 1.0,
              **pos_setting(pos_encoding),
              **({"hop_target": hop_target} if hop_target != "shape" else {}),
              **evaluate(model, task, device=device)}
    if parts is not None:
        model, adapter, vision, _ = load_image_model(final, device=device)
        record.update(_evaluate_images(model, adapter, vision, task, device))
        record["encoder_seconds"] = round(parts.vision.seconds, 1)
    train_wall = history[-1]["wall_seconds"] if history else 0.0
    record.update({
        "steps_after_text": history[-1]["step"] if history else 0,
        "history": history,
        "checkpoint": io.relpath(final),
        "checkpoint_sha256": io.read_checkpoint_meta(final if regime != "text_only" else stage1)["sha256"],
        "stage1_checkpoint": io.relpath(stage1),
        "train_config": train_config,
        "provenance": io.provenance(command, device, time.time() - t0, commit=commit,
                                    train_seconds=train_wall,
                                    steps_per_second=round(history[-1]["step"] / train_wall, 2) if history and train_wall else None),
    })
    if regime == "text_only":
        record["checkpoint"] = record["stage1_checkpoint"]
    return record


def finished(path, kind: str) -> bool:
    """Whether ``path`` holds a finished run's record of ``kind`` (``reproduce`` then skips the run): False if it
    does not exist; an error naming the file if it holds anything else (a malformed file is not "done")."""
    path = Path(path)
    if not path.exists():
        return False
    rec = io.read_results(path)
    if not isinstance(rec, dict) or rec.get("kind") != kind:
        got = rec.get("kind") if isinstance(rec, dict) else "a list"
        raise io.ResultsError(f"results file {io.relpath(path)} holds {got!r}, not a {kind!r} record; restore it with "
                              f"`git checkout -- {io.relpath(path)}`, or delete it and rerun.")
    return True


def reproduce(profile: str = "cpu", seeds=(0, 1, 2), regimes=REGIMES, encoders=None, grounding_ablation_seeds=(),
              device="cpu", command: str = "python -m bindlib reproduce", progress: bool = True, force: bool = False,
              steps_scale: float = 1.0, log=print, overwrite: bool = False, pos_encoding: str = DEFAULT_POS_ENCODING,
              hop_target: str = "shape") -> list[Path]:
    """Run every planned run whose results file is missing (or all with ``force``); resumable at any point.

    ``pos_encoding`` (an axis of every table: rope, learned, none) starts every regime from the text_only
    checkpoint of that encoding (``text_only_<profile>_s<seed>_<x>pos``, trained first if missing) and
    names every checkpoint and results file with the same ``_<x>pos`` suffix; ``hop_target`` likewise
    (``text_only_<profile>_s<seed>_hopslot``, names with ``_hopslot``)."""
    pos_suffix(pos_encoding)  # validates
    TrainConfig(hop_target=hop_target)  # validates
    commit = io.git_commit()
    runs = [dict(run, pos_encoding=pos_encoding, hop_target=hop_target)
            for run in planned_runs(profile, seeds, regimes, encoders, grounding_ablation_seeds)]
    written = []
    for k, run in enumerate(runs, 1):
        name = results_name(run, profile, steps_scale)
        path = io.RESULTS_DIR / f"{name}.json"
        if not force and finished(path, "regime"):  # a malformed file is an error, not done
            log(f"[{k}/{len(runs)}] {name}: done already ({path.name}); skipping")
            continue
        if force:
            io.refuse_overwrite(path, overwrite)
            io.refuse_overwrite(checkpoint_for(run, profile, steps_scale), overwrite)
        log(f"[{k}/{len(runs)}] {name}: running")
        record = run_regime(run, profile, device, command, commit, progress, steps_scale)
        written.append(io.write_results(name, record))
        log(f"[{k}/{len(runs)}] {name}: text ID {record['id_accuracy']:.3f}, OOD {record['ood_accuracy']:.3f}"
            + (f", image ID {record['image_id_accuracy']:.3f}" if "image_id_accuracy" in record else ""))
    return written


# ---------------------------------------------------------------- the table, from results files
def regime_results(profile: str = "cpu", results_dir=None, steps_scale: float | None = 1.0,
                   pos_encoding: str | None = DEFAULT_POS_ENCODING, hop_target: str | None = "shape",
                   image_stage: str | None = "short") -> list[dict]:
    """Every regime results record of a profile (kind 'regime') with the table's step budget
    (``steps_scale=None``: every budget, exploratory runs included), positional encoding, hop target and
    image stage ("short": the first grid; "learning": ``bindlib.experiments.headline``'s) (None: every one)."""
    recs = io.load_results("regime_*.json", results_dir, kind="regime", profile=profile)
    return [r for r in recs if (steps_scale is None or r.get("steps_scale", 1.0) == steps_scale)
            and (image_stage is None or r.get("image_stage", "short") == image_stage)
            and (pos_encoding is None or r.get("pos_encoding", DEFAULT_POS_ENCODING) == pos_encoding)
            and (hop_target is None or r.get("hop_target", "shape") == hop_target)]


def headline_table(records: list[dict], encoder: str = MAIN_ENCODER, metric: str = "ood_accuracy") -> list[dict]:
    """One row per regime: mean and sd over seeds of ``metric`` (text prompts), beside the paper's number.

    Image regimes use ``encoder``; grounding-ablation runs are left out.
    """
    rows = []
    for regime in REGIMES:
        vals = [r[metric] for r in records if r["regime"] == regime and r.get("grounding") in (True, None)
                and (regime not in IMAGE_REGIMES or r.get("encoder") == encoder)]
        if not vals:
            continue
        m, sd = mean_sd(vals)
        paper = OOD_ACCURACY.get(PAPER_ROW[regime]) if PAPER_ROW[regime] and metric == "ood_accuracy" else None
        rows.append({"regime": regime, "encoder": encoder if regime in IMAGE_REGIMES else None, "seeds": len(vals),
                     "mean": m, "sd": sd, "values": vals,
                     "paper": paper["value"] if isinstance(paper, dict) else paper})
    return rows
