"""The image stage that learns: named image curricula (levers), their runs, and the
image-stage throughput benchmark, with their command-line subcommands.

    python -m bindlib bench-image                        # steps/s: old path vs pool + bf16 + object tokens, one run
    python -m bindlib encoder-ceiling                    # what frozen features allow (oracle two-hop ceiling)
    python -m bindlib image-stage --recipe warm --seed 0 # one lever's curve and final results
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..core import io
from ..core.evaluate import evaluate
from ..core.profiles import DEFAULT_POS_ENCODING, ENCODERS, MAIN_ENCODER, checkpoint_dir, pos_setting
from .recipes import IMAGE_SHARE, IMAGE_STAGE_MIX, _evaluate_images, regime_config
from ..training.train import Stage, TrainConfig, train
from ..vision.featurepool import build_image_parts, oracle_ceiling
from ..vision.multimodal import Vision, load_image_model, save_adapter


# ---------------------------------------------------------------- image-stage recipes (levers)
# Named image curricula for the cpu profile, each continuing a text checkpoint: the image stage,
# then the 20% image / 80% text mix. They use the feature pool and bf16 autocast (the fast path,
# measured by `python -m bindlib bench-image`). Each lever changes one thing against "long":
#   warm    adapter warm-up with the transformer frozen (LLaVA-style), then everything at 0.3x lr
#   replay  text replay: 20% of the image stage's steps are text steps (replay50: half of them; replay_sub: with
#           the shape -> item query on image prompts too)
#   g0, g3  grounding weight 0 and 3 instead of 1
#   noise_replay  replay with NOISE tokens in every text batch from the image stage's first step
#           (noise_image_text as the paper runs it; the regime's own recipe adds noise only after stage 1)
#   noise_half_replay  the same with noise in half the text steps, so that clean text stays in the mix
MAIN_IMAGE_STAGE_ENCODER = "project_cnn_grid"  # objects one per patch: its frozen features carry shape (chapter 4)
IMAGE_RECIPE_SETTINGS = dict(batch_size=32, lr=1e-3, warmup=20, eval_every=100, eval_size=128, pool_size=4096)


def image_recipe_stages(name: str, image_steps: int = 1500, mix_steps: int = 600) -> list:
    mix = dict(IMAGE_STAGE_MIX)
    warm = min(300, image_steps // 2)  # 300 in every committed run; shorter only for tiny test budgets
    recipes = {
        "short": [Stage("image", 150, dict(mix), image=1.0, grounding=1.0), Stage("mix", 150, {"two_hop": 1.0}, image=IMAGE_SHARE)],
        "long": [Stage("image", image_steps, dict(mix), image=1.0, grounding=1.0)],
        "warm": [Stage("adapter_warmup", warm, dict(mix), image=1.0, grounding=1.0, freeze="lm"),
                 Stage("image", image_steps - warm, dict(mix), image=1.0, grounding=1.0, lr_scale=0.3)],
        "replay": [Stage("image", image_steps, dict(mix), image=0.8, grounding=1.0)],
        "noise_replay": [Stage("image", image_steps, dict(mix), image=0.8, grounding=1.0, noise=True)],
        "noise_half_replay": [Stage("image", image_steps, dict(mix), image=0.8, grounding=1.0, noise=0.5)],
        # the compute-matched text controls: replay's steps and queries, with every image step a text step
        "text_matched": [Stage("text", image_steps, dict(mix))],
        "noise_text_matched": [Stage("text", image_steps, dict(mix), noise=True)],
        "text_sub_matched": [Stage("text", image_steps, {**mix, "shape_to_item": 1.0})],  # replay_sub's text control
        "warm_replay": [Stage("adapter_warmup", warm, dict(mix), image=1.0, grounding=1.0, freeze="lm"),
                        Stage("image", image_steps - warm, dict(mix), image=0.8, grounding=1.0, lr_scale=0.3)],
        "replay50": [Stage("image", image_steps, dict(mix), image=0.5, grounding=1.0)],
        # replay with the one-hop shape -> item query added to the image prompts: the association lookup by
        # content, which a picture (no declaration order) requires and a slot-binding text model never learned
        "replay_sub": [Stage("image", image_steps, {**mix, "shape_to_item": 1.0}, image=0.8, grounding=1.0)],
        "warm_replay50": [Stage("adapter_warmup", warm, dict(mix), image=1.0, grounding=1.0, freeze="lm"),
                          Stage("image", image_steps - warm, dict(mix), image=0.5, grounding=1.0, lr_scale=0.3)],
        "g0": [Stage("image", image_steps, dict(mix), image=1.0, grounding=0.0)],
        "g3": [Stage("image", image_steps, dict(mix), image=1.0, grounding=3.0)],
    }
    if name not in recipes:
        raise ValueError(f"unknown image recipe {name!r}: allowed {sorted(recipes)}.")
    stages = recipes[name]
    if name != "short":
        lr_scale = stages[-1].lr_scale
        image_share = IMAGE_SHARE if stages[-1].image > 0 else 0.0
        stages.append(Stage("mix", mix_steps, {"two_hop": 1.0}, image=image_share, lr_scale=lr_scale,
                            noise=stages[-1].noise))
    return stages


IMAGE_RECIPES = ("short", "long", "warm", "replay", "noise_replay", "noise_half_replay", "text_matched", "noise_text_matched",
                 "warm_replay", "replay50", "replay_sub", "text_sub_matched", "warm_replay50", "g0", "g3")


TEXT_RECIPES = ("text_matched", "noise_text_matched", "text_sub_matched")  # compute-matched text controls


def recipe_regime(recipe: str) -> str:
    """The headline-table regime an image recipe belongs to (noise_replay: noise in text batches from step 1;
    the text_matched recipes: the compute-matched text rows)."""
    if recipe in TEXT_RECIPES:
        return "noise_text" if recipe.startswith("noise") else "text_only_matched"
    return "noise_image_text" if recipe.startswith("noise") else "image_text"


def image_recipe_config(recipe: str, seed: int, encoder: str = MAIN_ENCODER, init_from: str | None = None,
                        device: str = "cpu", pool_size: int | None = None, image_steps: int = 1500,
                        mix_steps: int = 600, image_positions: str = "sequence", image_tokens: str = "all",
                        noise_positions: str = "sequence", noise_width: int | None = None):
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}: allowed {sorted(ENCODERS)}.")
    stages = image_recipe_stages(recipe, image_steps, mix_steps)
    if noise_positions != "sequence" and not any(s.noise for s in stages):
        raise ValueError(f"recipe {recipe!r} has no noise, so it has no noise positions to choose; "
                         f"drop --noise-positions {noise_positions}.")
    if noise_width is not None and not any(s.noise for s in stages):
        raise ValueError(f"recipe {recipe!r} has no noise, so it has no noise width to choose; drop --noise-width.")
    if image_tokens != "all" and recipe in TEXT_RECIPES:
        raise ValueError(f"recipe {recipe!r} trains on text only, so it has no image tokens to choose; "
                         f"drop --image-tokens {image_tokens}.")
    s = IMAGE_RECIPE_SETTINGS
    pool = s["pool_size"] if pool_size is None else pool_size
    vision = {"profile": "cpu", "encoder": encoder, **({"pool_size": pool, "pool_seed": 0} if pool else {}),
              **({"image_positions": image_positions} if image_positions != "sequence" else {}),
              **({"image_tokens": image_tokens} if image_tokens != "all" else {}),
              **({"noise_positions": noise_positions} if noise_positions != "sequence" else {}),
              **({"noise_width": noise_width} if noise_width is not None else {})}
    start = init_from or io.relpath(checkpoint_dir("text_only", seed, "cpu"))
    pos = start_pos_encoding(start)
    return TrainConfig(profile="cpu", stages=stages,
                       declared_share=start_train_setting(start, "declared_share", 0.0),
                       batch_size=s["batch_size"], lr=s["lr"], warmup=s["warmup"], min_lr_frac=0.1,
                       eval_every=s["eval_every"], eval_size=s["eval_size"], early_stop=None, packed=True,
                       init_from=start, vision=vision, seed=seed, device=device, cpu_bf16=True,
                       model=pos_setting(pos))


def start_meta(init_from: str) -> dict:
    """The model.json of the text checkpoint an image recipe continues ({} if it is not there yet: loading it
    then fails with its own clear message)."""
    meta_file = io.REPO_ROOT / init_from / "model.json"
    return io.read_checkpoint_meta(meta_file.parent) if meta_file.exists() else {}


def start_train_setting(init_from: str, key: str, default):
    """A training setting of the checkpoint an image recipe continues (its text distribution carries over:
    a shortcut-dial model keeps its share of declared-order text prompts; images have no declaration order)."""
    return (start_meta(init_from).get("train_config") or {}).get(key, default)


def start_pos_encoding(init_from: str) -> str:
    """The positional encoding of the text checkpoint an image recipe continues (rope where not recorded).
    The correction test starts from learned positions too."""
    return (start_meta(init_from).get("model_config") or {}).get("pos_encoding", DEFAULT_POS_ENCODING)


def image_recipe_tag(recipe: str, seed: int, cfg: TrainConfig, image_steps: int = 1500) -> str:
    """The name of an image-stage run, read from its config: recipe, seed, encoder and pool (image recipes only:
    neither changes a text run), the image steps where not 1500, each vision setting that differs from its
    default, and the start where it is not the seed's own text model."""
    v, text = cfg.vision, recipe in TEXT_RECIPES
    tag = f"{recipe}_cpu_s{seed}" if text else f"{recipe}_{v.encoder}_cpu_s{seed}_pool{v.pool_size}"
    if image_steps != 1500 and recipe != "short":
        tag += f"_img{image_steps}"
    tag += "_ctxpos" if v.image_positions == "context" else ""
    tag += "_objtok" if v.image_tokens == "objects" and not text else ""
    tag += "_ctxnoise" if v.noise_positions == "context" else ""
    tag += f"_noise{v.noise_width}" if v.noise_width is not None else ""
    own_start = io.relpath(checkpoint_dir("text_only", seed, "cpu"))
    start = io.relpath(cfg.init_from) if cfg.init_from else own_start  # init_from is relative to the repository
    return tag + (f"_from_{Path(start).name}" if start != own_start else "")


def run_image_recipe(recipe: str, seed: int, encoder: str, device, command: str, commit: str,
                     init_from: str | None = None, pool_size: int | None = None, image_steps: int = 1500,
                     mix_steps: int = 600, progress: bool = False, log=print, overwrite: bool = False,
                     results: str | None = None, image_positions: str = "sequence",
                     image_tokens: str = "all", noise_positions: str = "sequence",
                     noise_width: int | None = None, data_root: Path | None = None) -> tuple[str, dict]:
    """Train one image recipe from a text checkpoint; return (name, results record) with the curve
    (``history``), text ID/OOD, image ID by N on fresh scenes, pool-scene accuracy and grounding. The
    checkpoint goes to data/checkpoints, or to ``data_root``/checkpoints (a test run: runs/smoke)."""
    t0 = time.time()
    cfg = image_recipe_config(recipe, seed, encoder, init_from, str(device), pool_size, image_steps, mix_steps,
                              image_positions, image_tokens, noise_positions, noise_width)
    pool = cfg.vision.pool_size
    tag = image_recipe_tag(recipe, seed, cfg, image_steps)
    final = (Path(data_root) / "checkpoints" if data_root else io.CHECKPOINTS_DIR) / f"imagestage_{tag}"
    results_dir = Path(data_root) / "results" if data_root else io.RESULTS_DIR
    for path in (final, results_dir / f"{results or 'imagestage_' + tag}.json"):  # before any work
        io.refuse_overwrite(path, overwrite)
    model, history, parts = train(cfg, out_dir=Path("runs") / f"imagestage_{tag}", progress=progress,
                                  log=None if progress else log, with_parts=True, image_steps=build_image_parts)
    meta = {"train_config": cfg.to_dict(), "regime": recipe_regime(recipe), "recipe": recipe, "profile": "cpu", "seed": seed,
            "encoder": encoder, "init_from": cfg.init_from, "steps": history[-1]["step"] if history else 0,
            **({"adapter": save_adapter(parts.adapter, final), "encoder_id": parts.vision.encoder.weights_id,
                "encoder_dim": parts.vision.dim} if parts is not None else {})}  # checked at load
    io.save_checkpoint(model, final, dtype=torch.bfloat16, meta=meta)
    task = cfg.task_config()
    if parts is not None:
        model, adapter, vision, _ = load_image_model(final, device=device)
    record = {"kind": "image_recipe", "recipe": recipe, "regime": recipe_regime(recipe), "encoder": encoder, "profile": "cpu",
              "seed": seed, "pool_size": pool, "init_from": cfg.init_from, **evaluate(model, task, device=device)}
    if parts is not None:
        record.update(_evaluate_images(model, adapter, vision, task, device))
    else:  # a text control: its image accuracy is not defined, and only the text target applies
        record["image_id_accuracy"] = None
    if parts is not None and parts.pool is not None:
        record["image_pool_accuracy"] = round(parts.pool.accuracy(model, adapter, task, 512, seed=41_000,
                                                                  device=device), 4)
    text_id = record["id_accuracy"]
    if cfg.declared_share > 0:  # a shortcut-dial start: its text target is on the text it trains on
        declared = evaluate(model, task, device=device, association_order="declared")
        record["declared"] = {k: declared[k] for k in ("id_accuracy", "ood_accuracy", "accuracy_by_n")}
        record["train_id_accuracy"] = text_id = (cfg.declared_share * declared["id_accuracy"]
                                                 + (1 - cfg.declared_share) * record["id_accuracy"])
    train_wall = history[-1]["wall_seconds"] if history else 0.0
    record.update({
        "targets": {"image_id_accuracy": 0.85, "id_accuracy": 0.95} if parts is not None else {"id_accuracy": 0.95},
        "meets_targets": bool((parts is None or record["image_id_accuracy"] >= 0.85) and text_id >= 0.95),
        "steps": history[-1]["step"] if history else 0, "history": history,
        "checkpoint": io.relpath(final),
        "checkpoint_sha256": io.read_checkpoint_meta(final)["sha256"], "train_config": cfg.to_dict(),
        "provenance": io.provenance(command, device, time.time() - t0, commit=commit, train_seconds=train_wall,
                                    steps_per_second=round(history[-1]["step"] / train_wall, 2) if train_wall else None),
    })
    return f"imagestage_{tag}", record


def cmd_bench_image(args, command: str, device) -> int:
    """Image-stage steps/s of the old path (render + encode every step, fp32) and the new ones, in one run.

    Variants are timed in interleaved rounds (so a change in machine load hits all of them alike);
    each variant keeps its own model and optimiser, all started from the same text checkpoint. Each round
    records wall time and the process's CPU time: with one thread (the default) the two agree on an idle
    machine, and the CPU time is what other processes on a shared machine cannot inflate. The speed-ups
    are ratios of median CPU-time rates.
    """
    io.refuse_overwrite(io.RESULTS_DIR / f"{args.results}.json", args.overwrite)
    import dataclasses
    import statistics

    from ..core.model import Transformer
    from ..training.train import training_loss

    commit = io.git_commit()
    base = regime_config("image_text", args.seed, "cpu", args.encoder, str(device))
    variants = {"old: render+encode, fp32": dict(pool=0, bf16=False),
                "pool, fp32": dict(pool=args.pool_size, bf16=False),
                "render+encode, bf16": dict(pool=0, bf16=True),
                "pool, bf16": dict(pool=args.pool_size, bf16=True),
                "object tokens, fp32": dict(pool=0, bf16=False, tokens="objects"),
                "new: pool, bf16, object tokens": dict(pool=args.pool_size, bf16=True, tokens="objects")}
    runs = {}
    t_pool = time.time()
    for name, v in variants.items():
        vision = dataclasses.replace(base.vision, pool_size=v["pool"], pool_seed=0,
                                     image_tokens=v.get("tokens", "all"))
        cfg = dataclasses.replace(base, vision=vision, cpu_bf16=v["bf16"])
        torch.manual_seed(0)
        model = Transformer(cfg.model_config()).to(device)
        start, _ = io.load_checkpoint(cfg.init_from, device=device)
        model.load_state_dict(start.state_dict())
        t = time.time()
        parts = build_image_parts(cfg, model, device)  # builds (or reads) the pool once
        setup = time.time() - t
        params = list(model.parameters()) + list(parts.adapter.parameters())
        runs[name] = dict(cfg=cfg, model=model, parts=parts, opt=torch.optim.AdamW(params, lr=cfg.lr), times=[],
                          cpu=[], setup_seconds=round(setup, 1), step=0)
    pool_seconds = time.time() - t_pool
    task, stage = base.task_config(), base.stages[0]

    def one_step(r):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=r["cfg"].cpu_bf16 or device.type == "cuda"):
            loss = training_loss(r["model"], r["cfg"], task, stage, r["step"], device, r["parts"])
        r["opt"].zero_grad(set_to_none=True)
        loss.backward()
        r["opt"].step()
        r["step"] += 1

    for r in runs.values():
        for _ in range(args.warmup):
            one_step(r)
    for _ in range(args.rounds):
        for r in runs.values():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                one_step(r)
            r["times"].append(args.steps / (time.perf_counter() - t))
            r["cpu"].append(args.steps / (time.process_time() - c))
    rows = []
    old = statistics.median(runs["old: render+encode, fp32"]["cpu"])
    for name, r in runs.items():
        rate = statistics.median(r["cpu"])
        rows.append({"variant": name, "pool_size": r["cfg"].vision.pool_size, "cpu_bf16": r["cfg"].cpu_bf16,
                     "image_tokens": r["cfg"].vision.image_tokens,
                     "steps_per_second": round(rate, 3), "steps_per_wall_second": round(statistics.median(r["times"]), 3),
                     "rounds": [round(x, 3) for x in r["cpu"]], "rounds_wall": [round(x, 3) for x in r["times"]],
                     "speedup_vs_old": round(rate / old, 2), "setup_seconds": r["setup_seconds"]})
        print(json.dumps(rows[-1]))
    new = next(x for x in rows if x["variant"].startswith("new"))
    record = {"kind": "image_throughput", "encoder": args.encoder, "batch_size": base.batch_size, "stage": stage.name,
              "steps_per_round": args.steps, "rounds": args.rounds, "warmup_steps": args.warmup, "rows": rows,
              "timing": "steps per CPU second of the process (median over rounds); wall-clock rates beside them",
              "target_speedup": 3.0, "speedup": new["speedup_vs_old"], "meets_target": new["speedup_vs_old"] >= 3.0,
              "reference_old_steps_per_second_in_committed_runs": 0.63,
              "setup_seconds_all_variants": round(pool_seconds, 1),
              "provenance": io.provenance(command, device, 0.0, commit=commit)}
    print(f"wrote {io.write_results(args.results, record)}")
    return 0


def cmd_image_stage(args, command: str, device) -> int:
    """Train one image recipe (bindlib.experiments.imagestage.IMAGE_RECIPES) from a text checkpoint; write its curve and results."""
    from . import settings

    commit = io.git_commit()
    smoke = args.image_steps < settings.SMOKE_STEPS  # a test run: never into data/
    data_root = settings.SMOKE_ROOT if smoke else None
    name, record = run_image_recipe(args.recipe, args.seed, args.encoder, device, command, commit,
                                    init_from=args.init_from, pool_size=args.pool_size, image_steps=args.image_steps,
                                    image_positions=args.image_positions, image_tokens=args.image_tokens,
                                    noise_positions=args.noise_positions, noise_width=args.noise_width,
                                    mix_steps=args.mix_steps, progress=not args.quiet, overwrite=args.overwrite,
                                    results=args.results, data_root=data_root)
    path = io.write_results(args.results or name, record, Path(data_root) / "results" if data_root else None)
    print(json.dumps({k: record[k] for k in ("id_accuracy", "ood_accuracy", "image_id_accuracy", "meets_targets")}
                     | {"image_pool_accuracy": record.get("image_pool_accuracy")}))
    print(f"wrote {path}")
    return 0


def cmd_encoder_ceiling(args, command: str, device) -> int:
    """Per-object colour/shape accuracy of frozen features and the two-hop ceiling an oracle reads from them."""
    io.refuse_overwrite(io.RESULTS_DIR / f"{args.results}.json", args.overwrite)
    from ..core.task import TaskConfig

    t0 = time.time()
    out = {}
    for name in args.encoders:
        vision = Vision.for_profile(name, "cpu")
        out[name] = oracle_ceiling(vision, TaskConfig(), args.train_scenes, args.test_scenes, seed=args.seed)
        out[name]["render"] = {"grid": vision.render_cfg.grid, "object_size": vision.render_cfg.object_size}
        print(name, json.dumps(out[name]))
    record = {"kind": "encoder_ceiling", "encoders": out, "seed": args.seed,
              "provenance": io.provenance(command, device, time.time() - t0)}
    print(f"wrote {io.write_results(args.results, record)}")
    return 0


def add_commands(sub) -> None:
    """Register bench-image, image-stage and encoder-ceiling; each parser's ``handler`` runs it."""
    from .settings import SMOKE_STEPS, add_setting, positive_int

    bi = sub.add_parser("bench-image", help="image-stage steps/s: old path (render+encode, fp32, every patch a token) "
                                            "vs feature pool + bf16 + object tokens")
    add_setting(bi, "encoder", default=MAIN_IMAGE_STAGE_ENCODER, more_help="the encoder whose image steps are timed")
    bi.add_argument("--seed", type=int, default=0)
    bi.add_argument("--pool-size", type=int, default=4096)
    bi.add_argument("--steps", type=positive_int, default=2, help="steps per variant per round")
    bi.add_argument("--rounds", type=int, default=12)
    bi.add_argument("--warmup", type=int, default=2)
    bi.add_argument("--device", default="cpu")
    bi.add_argument("--threads", type=int, default=1)
    bi.add_argument("--results", default="throughput_image_stage_cpu")

    ist = sub.add_parser("image-stage", help="train an image recipe (a lever) from a text checkpoint")
    ist.add_argument("--recipe", required=True, help="a name from bindlib.experiments.imagestage.IMAGE_RECIPES")
    ist.add_argument("--seed", type=int, default=0)
    add_setting(ist, "encoder", default=MAIN_IMAGE_STAGE_ENCODER, more_help="default: the grid-aligned CNN")
    ist.add_argument("--init-from", help="text checkpoint to start from (default data/checkpoints/text_only_cpu_s<seed>)")
    ist.add_argument("--pool-size", type=int, default=None, help="feature-pool scenes (0: render every step)")
    ist.add_argument("--image-steps", type=positive_int, default=1500,
                     help=f"image-stage steps (below {SMOKE_STEPS}: a test run, written under runs/smoke/)")
    ist.add_argument("--mix-steps", type=positive_int, default=600)
    ist.add_argument("--results", help="results file name (default imagestage_<recipe>_<encoder>_cpu_s<seed>_pool<P>)")
    ist.add_argument("--device", default="cpu")
    ist.add_argument("--threads", type=int, default=1)
    ist.add_argument("--quiet", action="store_true")
    add_setting(ist, "image_positions", more_help="context names the run _ctxpos")
    add_setting(ist, "image_tokens", more_help="objects names the run _objtok")
    add_setting(ist, "noise_positions", more_help="context names the run _ctxnoise")
    ist.add_argument("--noise-width", type=positive_int, default=None,
                     help="NOISE tokens in a noised text context (default: the image-token count, 49); names the run "
                          "_noise<W>")

    ec = sub.add_parser("encoder-ceiling", help="what frozen features carry: per-object accuracy and the oracle's two-hop ceiling")
    ec.add_argument("--encoders", nargs="+", default=[MAIN_ENCODER, "project_cnn_grid"])
    ec.add_argument("--train-scenes", type=int, default=1024)
    ec.add_argument("--test-scenes", type=int, default=512)
    ec.add_argument("--seed", type=int, default=0)
    ec.add_argument("--device", default="cpu")
    ec.add_argument("--threads", type=int, default=1)
    ec.add_argument("--results", default="encoder_ceiling_cpu")
    bi.set_defaults(handler=cmd_bench_image)
    ist.set_defaults(handler=cmd_image_stage)
    ec.set_defaults(handler=cmd_encoder_ceiling)
