"""The headline table with the image stage that learns: ``reproduce --image-stage learning``.

Each regime after the text recipe is one image recipe of ``bindlib.experiments.imagestage``, at the budget that meets
both targets (4,000 image-stage steps, then 400 mix steps), continued from the seed's text checkpoint:

    text_only_matched   text_matched          noise_text         noise_text_matched
    image_text          replay                noise_image_text   noise_replay

A learned-position start numbers its image tokens with the text context's positions (chapter 4 says why).

A run is trained only when its image-stage results file is missing. Otherwise the committed run is
adopted: its training config must be the one these settings give, and its checkpoint's weights must hash
to what its results recorded; either mismatch stops the command with one line saying which. The regime
record (``regime_<run tag>[_learnedpos]_learning.json``, kind ``regime``, ``image_stage: "learning"``)
carries the run's numbers, the name of its image-stage results file and both provenances.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..core import io
from .imagestage import (MAIN_IMAGE_STAGE_ENCODER, TEXT_RECIPES, image_recipe_config, image_recipe_tag,
                         run_image_recipe)
from ..core.profiles import DEFAULT_POS_ENCODING, IMAGE_REGIMES, pos_setting, pos_suffix, run_tag
from .recipes import finished, stage1_dir

LEARNING_RECIPES = {"text_only_matched": "text_matched", "noise_text": "noise_text_matched",
                    "image_text": "replay", "noise_image_text": "noise_replay"}
LEARNING_BUDGET = {"image_steps": 4000, "mix_steps": 400}
_NOT_COMPARED = ("device",)  # where a run trained does not change what it trained


def learning_run(regime: str, seed: int, pos_encoding: str = DEFAULT_POS_ENCODING, encoder: str = MAIN_IMAGE_STAGE_ENCODER) -> dict:
    """The image recipe, start, config and image-stage run name of one cell of the learning table."""
    if regime not in LEARNING_RECIPES:
        raise ValueError(f"regime {regime!r} has no image-stage recipe: allowed {sorted(LEARNING_RECIPES)} "
                         f"(text_only is the text recipe itself: regime_text_only_cpu_s<seed>.json).")
    recipe = LEARNING_RECIPES[regime]
    init = io.relpath(stage1_dir(seed, "cpu", pos_encoding))
    positions = "context" if pos_encoding != DEFAULT_POS_ENCODING and recipe not in TEXT_RECIPES else "sequence"
    cfg = image_recipe_config(recipe, seed, encoder, init, "cpu", None, image_positions=positions, **LEARNING_BUDGET)
    tag = image_recipe_tag(recipe, seed, cfg, LEARNING_BUDGET["image_steps"])
    return {"regime": regime, "recipe": recipe, "seed": seed, "encoder": encoder, "pos_encoding": pos_encoding,
            "init_from": init if pos_encoding != DEFAULT_POS_ENCODING else None, "image_positions": positions, "config": cfg,
            "name": f"imagestage_{tag}"}


def _comparable(train_config: dict) -> dict:
    from .migrate import relative_paths

    d = relative_paths(json.loads(json.dumps(train_config)))
    return {k: v for k, v in d.items() if k not in _NOT_COMPARED}


def adopt(run: dict, results_dir=None) -> dict | None:
    """The committed image-stage record of ``run`` (None if there is none), checked against its settings
    and against its checkpoint's weights."""
    path = Path(results_dir or io.RESULTS_DIR) / f"{run['name']}.json"
    if not path.exists():
        return None
    rec = io.read_results(path)
    have, want = _comparable(rec["train_config"]), _comparable(run["config"].to_dict())
    differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if differ:
        raise ValueError(f"{path.name} was trained with other settings ({', '.join(differ)}); rerun it with "
                         f"`python -m bindlib image-stage ... --overwrite`, or move the file away.")
    sha = io.read_checkpoint_meta(io.REPO_ROOT / rec["checkpoint"])["sha256"]
    if sha != rec["checkpoint_sha256"]:
        raise ValueError(f"{rec['checkpoint']} does not hold the weights {path.name} measured (sha256 differs); "
                         f"restore it with git, or rerun the image stage with --overwrite.")
    return rec


def learning_name(run: dict) -> str:
    return f"regime_{run_tag(run['regime'], run['seed'], 'cpu', run['encoder'])}{pos_suffix(run['pos_encoding'])}_learning"


def learning_record(run: dict, rec: dict, adopted: bool, command: str, device, commit: str, seconds: float) -> dict:
    """The regime record of one cell: the image-stage run's numbers under the headline table's names."""
    image = run["regime"] in IMAGE_REGIMES
    keep = {k: v for k, v in rec.items() if k not in ("kind", "provenance", "history", "regime", "encoder")}
    return {**keep, "kind": "regime", "regime": run["regime"], "image_stage": "learning", "recipe": run["recipe"],
            "encoder": run["encoder"] if image else None, "grounding": True if image else None, "steps_scale": 1.0,
            **pos_setting(run["pos_encoding"]),
            "image_stage_results": run["name"], "image_stage_provenance": rec["provenance"],
            "provenance": io.provenance(command, device, seconds, commit=commit, adopted_run=adopted)}


def reproduce_learning(seeds=(0, 1, 2), regimes=tuple(LEARNING_RECIPES), encoder: str = MAIN_IMAGE_STAGE_ENCODER,
                       pos_encoding: str = DEFAULT_POS_ENCODING, device="cpu", command: str = "python -m bindlib reproduce",
                       progress: bool = True, force: bool = False, overwrite: bool = False, log=print) -> list[Path]:
    """Every cell of the learning table whose regime file is missing (or all with ``force``): adopt the
    committed image-stage run, or train it, then write the regime record. Resumable at any point."""
    pos_suffix(pos_encoding)  # validates
    regimes = [r for r in regimes if r != "text_only"]  # the text recipe itself: its own regime file
    runs = [learning_run(regime, seed, pos_encoding, encoder) for seed in seeds for regime in regimes]
    commit, written = io.git_commit(), []
    for k, run in enumerate(runs, 1):
        name, t0 = learning_name(run), time.time()
        path = io.RESULTS_DIR / f"{name}.json"
        if not force and finished(path, "regime"):  # a malformed file is an error, not done
            log(f"[{k}/{len(runs)}] {name}: done already; skipping")
            continue
        io.refuse_overwrite(path, overwrite)
        rec = adopt(run)
        adopted = rec is not None
        if not adopted:
            log(f"[{k}/{len(runs)}] {run['name']}: training")
            _, rec = run_image_recipe(run["recipe"], run["seed"], run["encoder"], device, command, commit,
                                      init_from=run["init_from"], image_positions=run["image_positions"],
                                      progress=progress, log=log, overwrite=overwrite, **LEARNING_BUDGET)
            io.write_results(run["name"], rec)
        record = learning_record(run, rec, adopted, command, device, commit, time.time() - t0)
        written.append(io.write_results(name, record))
        log(f"[{k}/{len(runs)}] {name}: {'adopted ' + run['name'] if adopted else 'trained'}; text ID "
            f"{record['id_accuracy']:.3f}, OOD {record['ood_accuracy']:.3f}"
            + (f", image ID {record['image_id_accuracy']:.3f}" if record.get("image_id_accuracy") is not None else ""))
    return written
