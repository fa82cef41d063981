"""The five training regimes of the headline table and where their checkpoints and results live.

Every regime shares stage 1 (the text recipe, bindlib.recipes) and differs in what follows it:

- ``text_only``: stage 1 alone (the committed text checkpoints);
- ``text_only_matched``: stage 1, then more text for as many steps as the image regimes add
  (the compute-matched control the paper lacked);
- ``noise_text``: stage 1, then text with unattendable NOISE tokens for those steps;
- ``image_text``: stage 1, then the image stage (with feature grounding), then 20% image / 80% text;
- ``noise_image_text``: as image_text, with noise in every text batch after stage 1.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import io

REGIMES = ("text_only", "text_only_matched", "noise_text", "image_text", "noise_image_text")
IMAGE_REGIMES = ("image_text", "noise_image_text")
NOISE_REGIMES = ("noise_text", "noise_image_text")
MAIN_ENCODER = "project_cnn"  # the encoder of the headline table (the others are per-encoder results)
TABLE_ENCODERS = ("project_cnn", "project_vit", "random_cnn", "pixels")
# The paper's name for each regime's row of its OOD table (bindlib.paper.OOD_ACCURACY keys).
PAPER_ROW = {"text_only": "text_only", "noise_text": "noise_text", "image_text": "image_text",
             "noise_image_text": "noise_image_text", "text_only_matched": None}


def check_regime(regime: str) -> str:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}: allowed {REGIMES}.")
    return regime


def run_tag(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None) -> str:
    """The name shared by a run's checkpoint folder and results file.

    Text regimes: ``{regime}_{profile}_s{seed}``; image regimes add the encoder:
    ``{regime}_{encoder}_{profile}_s{seed}``.
    """
    check_regime(regime)
    if regime in IMAGE_REGIMES:
        return f"{regime}_{encoder or MAIN_ENCODER}_{profile}_s{seed}"
    return f"{regime}_{profile}_s{seed}"


def checkpoint_dir(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None) -> Path:
    return io.CHECKPOINTS_DIR / run_tag(regime, seed, profile, encoder)


# ---------------------------------------------------------------- the stages after stage 1
# Steps added after the text recipe. Image regimes: an image stage then a 20% image / 80% text mix;
# text regimes get the same total as more text (compute-matched).
REGIME_SETTINGS = {
    "cpu": dict(image_steps=150, mix_steps=150, batch_size=32, lr=1e-3, warmup=20, eval_every=50, eval_size=128),
    "paper": dict(image_steps=3000, mix_steps=3000, batch_size=256, lr=1e-3, warmup=300, eval_every=250, eval_size=512),
}
IMAGE_SHARE = 0.2  # of the mix stage
# The image stage asks both queries that read the picture (shape_to_item never looks at it).
IMAGE_STAGE_MIX = {"two_hop": 1.0, "color_to_shape": 1.0}
GROUNDING_WEIGHT = 1.0


def regime_stages(regime: str, profile: str = "cpu", grounding: bool = True, steps_scale: float = 1.0) -> list:
    from .train import Stage

    s = REGIME_SETTINGS[profile]
    n_img, n_mix = (max(1, int(s[k] * steps_scale)) for k in ("image_steps", "mix_steps"))
    noise = regime in NOISE_REGIMES
    if regime in ("text_only_matched", "noise_text"):
        return [Stage("more_text", n_img + n_mix, {"two_hop": 1.0}, noise=noise)]
    if regime in IMAGE_REGIMES:
        return [Stage("image", n_img, dict(IMAGE_STAGE_MIX), image=1.0, noise=noise,
                      grounding=GROUNDING_WEIGHT if grounding else 0.0),
                Stage("mix", n_mix, {"two_hop": 1.0}, image=IMAGE_SHARE, noise=noise)]
    raise ValueError(f"regime {regime!r} has no stages after the text recipe (it is the text recipe).")


def regime_config(regime: str, seed: int, profile: str = "cpu", encoder: str | None = None, device: str = "cpu",
                  grounding: bool = True, steps_scale: float = 1.0):
    """The TrainConfig that continues the text_only checkpoint of ``seed`` into ``regime``."""
    from .train import TrainConfig

    check_regime(regime)
    if profile not in REGIME_SETTINGS:
        raise ValueError(f"unknown profile {profile!r}: allowed {sorted(REGIME_SETTINGS)}.")
    s = REGIME_SETTINGS[profile]
    vision = {"profile": profile}
    if regime in IMAGE_REGIMES:
        from .encoders import ENCODERS

        encoder = encoder or MAIN_ENCODER
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}: allowed {sorted(ENCODERS)}.")
        vision["encoder"] = encoder
    return TrainConfig(profile=profile, stages=regime_stages(regime, profile, grounding, steps_scale),
                       batch_size=s["batch_size"], lr=s["lr"], warmup=s["warmup"], min_lr_frac=0.1,
                       eval_every=s["eval_every"], eval_size=s["eval_size"], early_stop=None, packed=True,
                       init_from=str(checkpoint_dir("text_only", seed, profile)), vision=vision, seed=seed,
                       device=device)


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
    """What sets a run apart from its table row: no grounding, or a scaled step budget (exploratory)."""
    scaled = steps_scale != 1.0 and run["regime"] != "text_only"  # text_only trains nothing here
    return ("" if run.get("grounding", True) else "_nogrounding") + (f"_steps{steps_scale:g}x" if scaled else "")


def results_name(run: dict, profile: str, steps_scale: float = 1.0) -> str:
    return f"regime_{run_tag(run['regime'], run['seed'], profile, run['encoder'])}{run_suffix(run, steps_scale)}"


def checkpoint_for(run: dict, profile: str, steps_scale: float = 1.0) -> Path:
    path = checkpoint_dir(run["regime"], run["seed"], profile, run["encoder"])
    return path.with_name(path.name + run_suffix(run, steps_scale))


# ---------------------------------------------------------------- running one row of the table
def _evaluate_images(model, adapter, vision, task, device, per_n: int = 128, seed: int = 777) -> dict:
    from .multimodal import grounding_accuracy, image_accuracy
    from .task import sample_batch

    by_n = {str(n): round(image_accuracy(model, adapter, vision, task, per_n, seed + n, device, n_range=(n, n)), 4)
            for n in range(task.id_range[0], task.id_range[1] + 1)}
    prompts = vision.prompts(sample_batch(task, 256, seed, device=device), seed)
    return {"image_id_accuracy": round(sum(by_n.values()) / len(by_n), 4), "image_accuracy_by_n": by_n,
            "grounding_accuracy": {k: round(v, 4) for k, v in grounding_accuracy(model, adapter, prompts).items()}}


def _stage1(seed: int, profile: str, device, progress: bool):
    """The text_only checkpoint of ``seed``; trained with the text recipe first if it is missing."""
    from . import io
    from .recipes import recipe
    from .train import train

    path = checkpoint_dir("text_only", seed, profile)
    if not (path / "model.json").exists():
        cfg = recipe(profile, seed=seed, device=str(device))
        model, history = train(cfg, out_dir=f"runs/text_only_{profile}_s{seed}", progress=progress)
        io.save_checkpoint(model, path, dtype=torch.bfloat16,
                           meta={"train_config": cfg.to_dict(), "regime": "text_only", "profile": profile, "seed": seed,
                                 "steps": history[-1]["step"] if history else 0})
    return path


def run_regime(run: dict, profile: str, device, command: str, commit: str, progress: bool = True,
               steps_scale: float = 1.0) -> dict:
    """Train (or, for text_only, load) one run, save its checkpoint, evaluate it, return its results record."""
    import time

    from .evaluate import evaluate
    from .task import TaskConfig
    from .train import TrainConfig, train

    t0 = time.time()
    regime, seed, encoder = run["regime"], run["seed"], run["encoder"]
    stage1 = _stage1(seed, profile, device, progress)
    final = checkpoint_for(run, profile, steps_scale)
    parts, history, cfg = None, [], None
    if regime == "text_only":
        model, meta = io.load_checkpoint(stage1, device=device)
        train_config = meta.get("train_config")
    else:
        cfg = regime_config(regime, seed, profile, encoder, str(device), run.get("grounding", True), steps_scale)
        run_dir = Path("runs") / final.name
        model, history, parts = train(cfg, out_dir=run_dir, progress=progress, log=None if progress else print,
                                      with_parts=True)
        meta = {"train_config": cfg.to_dict(), "regime": regime, "profile": profile, "seed": seed, "encoder": encoder,
                "grounding": run.get("grounding", True), "init_from": str(stage1),
                "steps": history[-1]["step"] if history else 0}
        if parts is not None:
            from .multimodal import save_adapter

            meta["adapter"] = save_adapter(parts.adapter, final)
        io.save_checkpoint(model, final, dtype=torch.bfloat16, meta=meta)
        model, _ = io.load_checkpoint(final, device=device)  # report the committed bf16 weights
        train_config = cfg.to_dict()
    task = TrainConfig(**train_config).task_config() if train_config else TaskConfig()
    record = {"kind": "regime", "regime": regime, "encoder": encoder, "profile": profile, "seed": seed,
              "grounding": run.get("grounding", True) if regime in IMAGE_REGIMES else None,
              "steps_scale": steps_scale if regime != "text_only" else 1.0,
              **evaluate(model, task, device=device)}
    if parts is not None:
        from .multimodal import load_image_model

        model, adapter, vision, _ = load_image_model(final, device=device)
        record.update(_evaluate_images(model, adapter, vision, task, device))
        record["encoder_seconds"] = round(parts.vision.seconds, 1)
    train_wall = history[-1]["wall_seconds"] if history else 0.0
    record.update({
        "steps_after_text": history[-1]["step"] if history else 0,
        "history": history,
        "checkpoint": str(final.relative_to(io.REPO_ROOT)) if final.is_absolute() else str(final),
        "checkpoint_sha256": io.read_checkpoint_meta(final if regime != "text_only" else stage1)["sha256"],
        "stage1_checkpoint": str(stage1.relative_to(io.REPO_ROOT)),
        "train_config": train_config,
        "provenance": io.provenance(command, device, time.time() - t0, commit=commit,
                                    train_seconds=train_wall,
                                    steps_per_second=round(history[-1]["step"] / train_wall, 2) if history and train_wall else None),
    })
    if regime == "text_only":
        record["checkpoint"] = record["stage1_checkpoint"]
    return record


def reproduce(profile: str = "cpu", seeds=(0, 1, 2), regimes=REGIMES, encoders=None, grounding_ablation_seeds=(),
              device="cpu", command: str = "python -m bindlib reproduce", progress: bool = True, force: bool = False,
              steps_scale: float = 1.0, log=print) -> list[Path]:
    """Run every planned run whose results file is missing (or all with ``force``); resumable at any point."""
    from . import io

    commit = io.git_commit()
    runs = planned_runs(profile, seeds, regimes, encoders, grounding_ablation_seeds)
    written = []
    for k, run in enumerate(runs, 1):
        name = results_name(run, profile, steps_scale)
        path = io.RESULTS_DIR / f"{name}.json"
        if path.exists() and not force:
            log(f"[{k}/{len(runs)}] {name}: done already ({path.name}); skipping")
            continue
        log(f"[{k}/{len(runs)}] {name}: running")
        record = run_regime(run, profile, device, command, commit, progress, steps_scale)
        written.append(io.write_results(name, record))
        log(f"[{k}/{len(runs)}] {name}: text ID {record['id_accuracy']:.3f}, OOD {record['ood_accuracy']:.3f}"
            + (f", image ID {record['image_id_accuracy']:.3f}" if "image_id_accuracy" in record else ""))
    return written


# ---------------------------------------------------------------- the table, from results files
def regime_results(profile: str = "cpu", results_dir=None, steps_scale: float | None = 1.0) -> list[dict]:
    """Every regime results record of a profile (kind 'regime') with the table's step budget
    (``steps_scale=None``: every budget, exploratory runs included)."""
    recs = io.load_results("regime_*.json", results_dir, kind="regime", profile=profile)
    return [r for r in recs if steps_scale is None or r.get("steps_scale", 1.0) == steps_scale]


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return m, sd


def headline_table(records: list[dict], encoder: str = MAIN_ENCODER, metric: str = "ood_accuracy") -> list[dict]:
    """One row per regime: mean and sd over seeds of ``metric`` (text prompts), beside the paper's number.

    Image regimes use ``encoder``; grounding-ablation runs are left out.
    """
    from .paper import OOD_ACCURACY

    rows = []
    for regime in REGIMES:
        vals = [r[metric] for r in records if r["regime"] == regime and r.get("grounding") in (True, None)
                and (regime not in IMAGE_REGIMES or r.get("encoder") == encoder)]
        if not vals:
            continue
        m, sd = _mean_sd(vals)
        paper = OOD_ACCURACY.get(PAPER_ROW[regime]) if PAPER_ROW[regime] and metric == "ood_accuracy" else None
        rows.append({"regime": regime, "encoder": encoder if regime in IMAGE_REGIMES else None, "seeds": len(vals),
                     "mean": m, "sd": sd, "values": vals,
                     "paper": paper["value"] if isinstance(paper, dict) else paper})
    return rows


def ordering_checks(rows: list[dict]) -> dict:
    """Whether the paper's orderings hold for the means (None where a regime is missing)."""
    mean = {r["regime"]: r["mean"] for r in rows}

    def less(a, b):
        return mean[a] < mean[b] if a in mean and b in mean else None

    return {"text_only < image_text": less("text_only", "image_text"),
            "text_only_matched < image_text": less("text_only_matched", "image_text"),
            "noise_text < noise_image_text": less("noise_text", "noise_image_text"),
            "image_text < noise_image_text": less("image_text", "noise_image_text")}


def encoder_table(records: list[dict], regime: str = "image_text") -> list[dict]:
    """Per encoder: text OOD, image ID and grounding accuracy (means over the seeds present)."""
    rows = []
    for enc in sorted({r["encoder"] for r in records if r["regime"] == regime and r.get("encoder")}):
        rs = [r for r in records if r["regime"] == regime and r.get("encoder") == enc and r.get("grounding") is not False]
        if not rs:
            continue
        row = {"encoder": enc, "seeds": len(rs)}
        for key in ("id_accuracy", "ood_accuracy", "image_id_accuracy"):
            row[key] = _mean_sd([r[key] for r in rs])[0]
        for key in ("color_from_region", "shape_from_region", "region_from_color"):
            row[key] = _mean_sd([r["grounding_accuracy"][key] for r in rs])[0]
        rows.append(row)
    return rows


# ---------------------------------------------------------------- image-stage recipes (issue 10: levers)
# Named image curricula for the cpu profile, each continuing a text checkpoint: the image stage,
# then the 20% image / 80% text mix. They use the feature pool and bf16 autocast (the fast path,
# measured by `python -m bindlib bench-image`). Each lever changes one thing against "long":
#   warm    adapter warm-up with the transformer frozen (LLaVA-style), then everything at 0.3x lr
#   replay  text replay: 20% of the image stage's steps are text steps
#   g0, g3  grounding weight 0 and 3 instead of 1
IMAGE_RECIPE_SETTINGS = dict(batch_size=32, lr=1e-3, warmup=20, eval_every=100, eval_size=128, pool_size=4096)


def image_recipe_stages(name: str, image_steps: int = 1500, mix_steps: int = 600) -> list:
    from .train import Stage

    mix = dict(IMAGE_STAGE_MIX)
    warm = 300
    recipes = {
        "short": [Stage("image", 150, dict(mix), image=1.0, grounding=1.0), Stage("mix", 150, {"two_hop": 1.0}, image=IMAGE_SHARE)],
        "long": [Stage("image", image_steps, dict(mix), image=1.0, grounding=1.0)],
        "warm": [Stage("adapter_warmup", warm, dict(mix), image=1.0, grounding=1.0, freeze="lm"),
                 Stage("image", image_steps - warm, dict(mix), image=1.0, grounding=1.0, lr_scale=0.3)],
        "replay": [Stage("image", image_steps, dict(mix), image=0.8, grounding=1.0)],
        "warm_replay": [Stage("adapter_warmup", warm, dict(mix), image=1.0, grounding=1.0, freeze="lm"),
                        Stage("image", image_steps - warm, dict(mix), image=0.8, grounding=1.0, lr_scale=0.3)],
        "g0": [Stage("image", image_steps, dict(mix), image=1.0, grounding=0.0)],
        "g3": [Stage("image", image_steps, dict(mix), image=1.0, grounding=3.0)],
    }
    if name not in recipes:
        raise ValueError(f"unknown image recipe {name!r}: allowed {sorted(recipes)}.")
    stages = recipes[name]
    if name != "short":
        lr_scale = stages[-1].lr_scale
        stages.append(Stage("mix", mix_steps, {"two_hop": 1.0}, image=IMAGE_SHARE, lr_scale=lr_scale))
    return stages


IMAGE_RECIPES = ("short", "long", "warm", "replay", "warm_replay", "g0", "g3")


def image_recipe_config(recipe: str, seed: int, encoder: str = MAIN_ENCODER, init_from: str | None = None,
                        device: str = "cpu", pool_size: int | None = None, image_steps: int = 1500,
                        mix_steps: int = 600):
    from .encoders import ENCODERS
    from .train import TrainConfig

    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}: allowed {sorted(ENCODERS)}.")
    s = IMAGE_RECIPE_SETTINGS
    pool = s["pool_size"] if pool_size is None else pool_size
    vision = {"profile": "cpu", "encoder": encoder, **({"pool_size": pool, "pool_seed": 0} if pool else {})}
    return TrainConfig(profile="cpu", stages=image_recipe_stages(recipe, image_steps, mix_steps),
                       batch_size=s["batch_size"], lr=s["lr"], warmup=s["warmup"], min_lr_frac=0.1,
                       eval_every=s["eval_every"], eval_size=s["eval_size"], early_stop=None, packed=True,
                       init_from=init_from or str(checkpoint_dir("text_only", seed, "cpu")), vision=vision, seed=seed,
                       device=device, cpu_bf16=True)


def image_recipe_tag(recipe: str, seed: int, encoder: str, pool_size: int, image_steps: int = 1500,
                     start: str | None = None) -> str:
    tag = f"{recipe}_{encoder}_cpu_s{seed}_pool{pool_size}"
    if image_steps != 1500 and recipe != "short":
        tag += f"_img{image_steps}"
    return tag + (f"_from_{start}" if start else "")


def run_image_recipe(recipe: str, seed: int, encoder: str, device, command: str, commit: str,
                     init_from: str | None = None, pool_size: int | None = None, image_steps: int = 1500,
                     mix_steps: int = 600, progress: bool = False, log=print) -> tuple[str, dict]:
    """Train one image recipe from a text checkpoint; return (name, results record) with the curve
    (``history``), text ID/OOD, image ID by N on fresh scenes, pool-scene accuracy and grounding."""
    import time

    from .evaluate import evaluate
    from .multimodal import load_image_model, save_adapter
    from .train import train

    t0 = time.time()
    cfg = image_recipe_config(recipe, seed, encoder, init_from, str(device), pool_size, image_steps, mix_steps)
    pool = cfg.vision.get("pool_size", 0)
    start = Path(init_from).name if init_from else None
    tag = image_recipe_tag(recipe, seed, encoder, pool, image_steps, start)
    final = io.CHECKPOINTS_DIR / f"imagestage_{tag}"
    model, history, parts = train(cfg, out_dir=Path("runs") / f"imagestage_{tag}", progress=progress,
                                  log=None if progress else log, with_parts=True)
    meta = {"train_config": cfg.to_dict(), "regime": "image_text", "recipe": recipe, "profile": "cpu", "seed": seed,
            "encoder": encoder, "init_from": cfg.init_from, "steps": history[-1]["step"] if history else 0,
            "adapter": save_adapter(parts.adapter, final)}
    io.save_checkpoint(model, final, dtype=torch.bfloat16, meta=meta)
    model, adapter, vision, _ = load_image_model(final, device=device)
    task = cfg.task_config()
    record = {"kind": "image_recipe", "recipe": recipe, "regime": "image_text", "encoder": encoder, "profile": "cpu",
              "seed": seed, "pool_size": pool, "init_from": cfg.init_from, **evaluate(model, task, device=device)}
    record.update(_evaluate_images(model, adapter, vision, task, device))
    if parts.pool is not None:
        record["image_pool_accuracy"] = round(parts.pool.accuracy(model, adapter, task, 512, seed=41_000,
                                                                  device=device), 4)
    train_wall = history[-1]["wall_seconds"] if history else 0.0
    record.update({
        "targets": {"image_id_accuracy": 0.85, "id_accuracy": 0.95},
        "meets_targets": bool(record["image_id_accuracy"] >= 0.85 and record["id_accuracy"] >= 0.95),
        "steps": history[-1]["step"] if history else 0, "history": history,
        "checkpoint": str(final.relative_to(io.REPO_ROOT)),
        "checkpoint_sha256": io.read_checkpoint_meta(final)["sha256"], "train_config": cfg.to_dict(),
        "provenance": io.provenance(command, device, time.time() - t0, commit=commit, train_seconds=train_wall,
                                    steps_per_second=round(history[-1]["step"] / train_wall, 2) if train_wall else None),
    })
    return f"imagestage_{tag}", record
