"""Resumable training state: step-tagged weights, optimiser and train-time modules, with no pickle.

Tensors go to safetensors, everything else (step, history, wall time, param groups) to model.json.
A kill at any moment leaves model.json describing a complete, resumable step.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core import io


def save_train_state(path: Path, model, opt, step: int, history: list, cfg, wall: float, extras: dict) -> None:
    """Save ``model``, ``opt`` and the modules in ``extras`` (e.g. the image adapter, None for text)."""
    from safetensors.torch import save as st_save

    sd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items() for k, v in st.items()}
    for name, module in extras.items():
        if module is not None:
            tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    blob = st_save(tensors)
    state_name, weights_name = f"train_state-{step:07d}.safetensors", f"model-{step:07d}.safetensors"
    io.atomic_write(path / state_name, blob)
    io.save_checkpoint(model, path, weights_name=weights_name,
                       meta={"train_config": cfg.to_dict(), "step": step, "state_file": state_name,
                             "state_sha256": io.sha256_bytes(blob),
                             "state": {"param_groups": sd["param_groups"], "step": step, "history": history,
                                       "wall": wall}})
    for old in list(path.glob("train_state-*")) + list(path.glob("model-*.safetensors")):
        if old.name not in (state_name, weights_name):
            old.unlink()


def resume_train_state(out: Path, model, opt, cfg, device, extras: dict):
    """Load what ``save_train_state`` wrote into model, optimiser and ``extras``; return (step, history, wall)."""
    from safetensors.torch import load as st_load

    saved, meta = io.load_checkpoint(out, device=device)
    saved_cfg = meta.get("train_config") or {}
    if set(saved_cfg) <= set(cfg.to_dict()):  # fields added since the run started take their defaults
        saved_cfg = type(cfg)(**saved_cfg).to_dict()
    if saved_cfg != cfg.to_dict():
        raise io.CheckpointError(
            f"{out} holds a run with a different training config; resume needs the same config. "
            f"Use another --run-dir folder, or delete {out} (or pass --fresh) to start over.")
    if "state" not in meta:
        raise io.CheckpointError(f"{out} holds a training state from before states were saved without pickle; "
                                 f"delete {out} (or pass --fresh) to start over.")
    blob = io.read_verified(out / meta["state_file"], meta.get("state_sha256"), out / "model.json",
                            f"delete {out} (or pass --fresh) to start over")
    tensors = {k: v.to(device) for k, v in st_load(blob).items()}
    model.load_state_dict(saved.state_dict())
    opt_state: dict = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v.cpu() if name == "step" else v
    opt.load_state_dict({"state": opt_state, "param_groups": meta["state"]["param_groups"]})
    for name, module in extras.items():
        if module is not None:
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    state = meta["state"]
    return state["step"], state["history"], state["wall"]


# ---------------------------------------------------------------- an unfinished run, on record
def progress_record(run_dir: str | Path, of: str, command: str, commit: str | None = None,
                    variant: str | None = None) -> dict:
    """What a resumable run folder holds so far: its history, config and step, with provenance. ``of`` names
    the results file the finished run will write; readers use the progress record only while that is missing."""
    meta = io.read_checkpoint_meta(run_dir)  # verifies the manifest: an edited model.json fails here
    if "state" not in meta:
        raise io.CheckpointError(f"{run_dir} holds a final checkpoint, not a resumable run (no training state); "
                                 f"pass the run's --run-dir folder.")
    cfg, state = meta.get("train_config") or {}, meta["state"]
    return _record(of, variant, io.relpath(run_dir), cfg, meta.get("model_config"), state["history"], state["step"],
                   io.provenance(command, cfg.get("device", "cpu"), state["wall"], commit=commit))


def _record(of, variant, run_dir, cfg: dict, model_config, history: list, step: int, provenance: dict) -> dict:
    """A progress record (kind ``training_progress``), from a run folder or from a log."""
    return {"kind": "training_progress", "of": of, "variant": variant, "run_dir": run_dir, "seed": cfg.get("seed"),
            "step": step, "budget": sum(s.get("steps", 0) for s in cfg.get("stages", [])),
            "stopped": bool(history and history[-1].get("stopped")), "history": history, "train_config": cfg,
            "model_config": model_config, "provenance": provenance}


def log_progress_record(log: str | Path, of: str, cfg: dict, model_config: dict, run_command: str, run_commit: str,
                        command: str, variant: str | None = None) -> dict:
    """The progress record of a run whose folder is gone, from its JSON-lines log (train/curve ``--quiet``).
    ``cfg`` and ``model_config`` are what its own command line builds (``plans.command_config``), so they are
    the configs that run trained with at ``run_commit``; ``run_dir`` is None (nothing to resume)."""
    try:
        history = [json.loads(line) for line in Path(log).read_text().splitlines() if line.startswith('{"step"')]
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--log {log}: cannot read its JSON lines ({e}); pass the log the run wrote with --quiet.")
    if not history or any(b["step"] <= a["step"] for a, b in zip(history, history[1:])):
        raise ValueError(f"--log {log} holds no increasing run of step records; pass the log of one run "
                         f"(train/curve --quiet write one JSON line per evaluation).")
    return _record(of, variant, None, cfg, model_config, history, history[-1]["step"],
                   io.provenance(command, cfg.get("device", "cpu"), history[-1].get("wall_seconds", 0.0),
                                 commit=run_commit, source_log=str(log), run_command=run_command))


def cmd_progress(args, command: str, device) -> int:
    name = f"progress_{args.results}"
    path = io.RESULTS_DIR / f"{name}.json"
    io.refuse_overwrite(path, args.overwrite)
    io.check_writable(path.parent)
    if (args.run_dir is None) == (args.log is None) or (args.log and not (args.run_command and args.run_commit)):
        raise ValueError("progress needs --run-dir DIR (a resumable run folder), or --log FILE with --run-command "
                         "and --run-commit (a run whose folder is gone); not both.")
    record = (progress_record(args.run_dir, args.results, command, commit=io.git_commit(), variant=args.variant)
              if args.run_dir else
              log_progress_record(args.log, args.results, *args.run_config, args.run_command, args.run_commit, command,
                                  args.variant))
    io.write_results(name, record)
    last = record["history"][-1] if record["history"] else {}
    print(f"step {record['step']:,} of {record['budget']:,}, two-hop ID {last.get('acc_two_hop', float('nan')):.3f}; "
          f"wrote {path}")
    return 0


def add_command(sub) -> None:
    pr = sub.add_parser("progress", help="record a resumable run's history so far (the curve of a run that has "
                                         "not finished), as progress_<results>.json")
    pr.add_argument("--run-dir", help="the run's resumable folder (train/curve --run-dir)")
    pr.add_argument("--log", help="instead of --run-dir: the JSON-lines log a run wrote with --quiet (its folder is gone)")
    pr.add_argument("--run-command", help="with --log: the run's command line, which rebuilds its config")
    pr.add_argument("--run-commit", help="with --log: the commit the run trained at")
    pr.add_argument("--results", required=True, help="the results name the finished run will write (e.g. "
                                                     "training_text_only_cpu_s2_steps8x_hopw0)")
    pr.add_argument("--variant", help="the run's variant, for a curve run (curve --variant)")
    pr.set_defaults(handler=cmd_progress, device="cpu")
