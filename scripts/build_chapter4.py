#!/usr/bin/env python
"""Write chapters/04_curriculum.ipynb from this outline (then execute it and run scripts/colab.py).

    python scripts/build_chapter4.py && jupyter execute --inplace chapters/04_curriculum.ipynb && python scripts/colab.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

LIVE_SCALE = 0.1  # share of the CPU profile's post-text steps that the live cell runs

CELLS = [
    ("md", """# The curriculum and the headline table

The paper's central table compares four training regimes on the same question: after training, how well does the model answer **text** prompts with more objects than it ever saw (OOD, $N$ = 9..16)?
Text alone gives 37.2%; adding noise tokens to the text, 57.5%; adding images, 69.5%; images and noise together, 83.6%.
This chapter builds the curriculum behind those rows, runs a small piece of it live, and puts our full table, made by one `bindlib` command, next to the paper's."""),
    ("md", """## Five regimes, one starting point

Every regime starts from the same place: the text-only model of chapter 2 (stage 1 of the paper's curriculum, *text until ID accuracy saturates*).
What happens next is the only difference between rows:

* `text_only` stops there;
* `image_text` trains on the image version of the task (stage 2, with feature grounding), then on a mix of 20% image and 80% text batches (stage 3);
* `noise_image_text` does the same with noise tokens in every text batch;
* `noise_text` continues on text with noise tokens only;
* `text_only_matched` continues on plain text for exactly as many steps as the image regimes add.

The last row is a control the paper did not have: without it, "images help" cannot be told apart from "more training helps".
The paper's fourth stage (vocabulary expansion) is optional in the issue and not run here.
`bindlib.regimes` holds the configurations; printing them shows the stages each regime adds:"""),
    ("code", """from bindlib import recipes as regimes

for regime in regimes.REGIMES:
    if regime == "text_only":
        print(f"{regime:>18}: the text recipe only (chapter 2)")
        continue
    cfg = regimes.regime_config(regime, seed=0)
    parts = []
    for st in cfg.stages:
        what = "image" if st.image == 1 else (f"{st.image:.0%} image / {1 - st.image:.0%} text" if st.image else "text")
        extras = [x for x, on in (("noise", st.noise), ("grounding", st.grounding > 0)) if on]
        parts.append(f"{st.name} ({st.steps} steps, {what}{', ' + ' + '.join(extras) if extras else ''})")
    print(f"{regime:>18}: " + " -> ".join(parts) + f"  [total {cfg.total_steps} steps]")"""),
    ("md", """## What the model sees in each regime

Chapter 3 showed how a context becomes a picture and the picture becomes patch tokens.
In an **image prompt** those patch tokens, mapped to the model's width by a trainable projector, take the place of `c1 s1 ... cN sN`; the association lines and the query stay text.
In a **noised prompt** the same context block is as long as the image block (49 tokens in the CPU profile), and the 2N real tokens are scattered through it in order, with `NOISE` tokens in between.
Noise tokens take position ids, so the distance between a colour and its shape, and between the k-th object and the query, changes from prompt to prompt; but their key mask is off, so no token can attend to them and their content cannot matter.
Here is one prompt in its three forms:"""),
    ("code", """from bindlib.vision.multimodal import add_noise, image_token_count, relayout_context
from bindlib.task import TaskConfig, sample_batch

task = TaskConfig()
width = image_token_count("cpu")
text = sample_batch(task, 1, seed=4, n=3)
print("text :", text.decode(0))
print("noise:", add_noise(text, width, seed=1).decode(0))
print("image:", relayout_context(text, width, "image").decode(0))"""),
    ("md", """The claim "their content cannot matter" is checked by a unit test (`tests/test_multimodal.py`), and it is the exercise at the end of this chapter.

## Feature grounding

The paper's image stage adds a "bidirectional feature-grounding" task whose exact form we could not read, so we chose one and made it a switch (`Stage.grounding`):

* **region -> words**: the model's final residual stream, averaged over the patches an object covers and read through the model's own unembedding, must name that object's colour and shape (half of the probability on each);
* **word -> region**: a colour or shape word's embedding, mapped by a trainable query matrix, scores the final residual at every patch; a softmax over the 49 patches must put its mass on that object's patches.

Both directions go through the language model itself, not through a separate head on the encoder, so grounding shapes the same representations that the binding task uses.
One run of `image_text` without grounding is the ablation (below).

## A small run, live

The full table takes hours on a CPU, so it was made once by `python -m bindlib reproduce --profile cpu` and committed.
Here is a tenth of one `image_text` run, starting from the committed text-only checkpoint of seed 0 with the project CNN as the frozen encoder.
Before training, the text-only model with a fresh projector cannot read pictures at all:"""),
    ("code", """import dataclasses
import torch
from bindlib import io
from bindlib.vision.multimodal import ImageAdapter, Vision, image_accuracy

torch.manual_seed(0)
vision = Vision.for_profile("project_cnn", "cpu")
text_model, _ = io.load_checkpoint(regimes.checkpoint_dir("text_only", 0))
fresh = ImageAdapter(vision.dim, text_model.cfg.d_model)
print(f"image-prompt accuracy of the text-only model (ID N): {image_accuracy(text_model, fresh, vision, task, 256, 5):.1%}")
chance_id = sum(1 / n for n in range(task.id_range[0], task.id_range[1] + 1)) / (task.id_range[1] - task.id_range[0] + 1)
print(f"chance (one of the N items in the prompt): {chance_id:.1%}")"""),
    ("code", f"""# NBVAL_IGNORE_OUTPUT
from bindlib.train import train

live_cfg = regimes.regime_config("image_text", seed=0, steps_scale={LIVE_SCALE})
live_cfg = dataclasses.replace(live_cfg, eval_every=live_cfg.total_steps)
live_model, live_history, live_parts = train(live_cfg, progress=True, with_parts=True)
last = live_history[-1]
print(f"after {{last['step']}} steps: image ID accuracy {{last['acc_image_two_hop']:.1%}}, text ID accuracy {{last['acc_two_hop']:.1%}}; "
      f"rendering + encoding took {{live_parts.vision.seconds:.0f}} s of {{last['wall_seconds']:.0f}} s")"""),
    ("md", """Thirty steps show the machinery (image batches, grounding, the mix), not learning: compare the image accuracy with chance above. The committed runs train ten times longer, and the table below shows how far that gets.
(This cell's numbers change with the machine's thread count, so the book's test suite does not compare them.)

## The table

Each committed run wrote `data/results/regime_<regime>[_<encoder>]_cpu_s<seed>.json` with its accuracies, training history, checkpoint hash and provenance (command, commit, device, wall time).
`regimes.headline_table` averages them over seeds; the image rows use the project CNN, the table's main encoder:"""),
    ("code", """from bindlib.profiles import OOD_ACCURACY

records = regimes.regime_results("cpu")
table = regimes.headline_table(records)
print(f"{'regime':>18} {'seeds':>5} {'ours: OOD mean +- sd':>22} {'paper':>7}   ID mean")
for row in table:
    ids = [r["id_accuracy"] for r in records if r["regime"] == row["regime"] and r.get("grounding") in (True, None)
           and r.get("encoder") in (None, row["encoder"])]
    paper = f"{row['paper']:.1%}" if row["paper"] is not None else "  -  "
    print(f"{row['regime']:>18} {row['seeds']:>5} {row['mean']:>14.1%} +- {row['sd']:.1%} {paper:>7}   {sum(ids) / len(ids):.1%}")"""),
    ("code", """from bindlib.book.plots import regime_table_chart

regime_table_chart(table)"""),
    ("md", """## Seed spread

Three seeds per row are few, so here is every seed, not only the mean; `spread` is the largest minus the smallest:"""),
    ("code", """for row in table:
    vals = ", ".join(f"{v:.1%}" for v in row["values"])
    print(f"{row['regime']:>18}: {vals}   (spread {max(row['values']) - min(row['values']):.1%})")"""),
    ("md", """Blue dots are single seeds, the bar and whisker our mean and standard deviation, the red tick the paper's number (the noise rows' numbers come from secondary summaries, see `bindlib.paper`).
Do the paper's orderings hold for our means?"""),
    ("code", """for claim, holds in regimes.ordering_checks(table).items():
    print(f"{claim:>32}: {'holds' if holds else ('missing rows' if holds is None else 'does NOT hold')}")
gaps = {r["regime"]: r["mean"] - r["paper"] for r in table if r["paper"] is not None}
print("\\nours minus paper (OOD): " + ", ".join(f"{k} {v:+.1%}" for k, v in gaps.items()))"""),
    ("md", """## Accuracy by number of objects

The table's OOD number averages $N$ = 9..16. The curves show where each regime loses accuracy (dashed line: the edge of the training range):"""),
    ("code", """from bindlib.book.plots import regime_by_n_chart

regime_by_n_chart(records, task)"""),
    ("md", """## Which encoder?

The paper used three pretrained encoders (ResNet-152, ViT-B/16, DINOv3); our machines cannot download them, so the table's runs use encoders the project pretrains itself (chapter 3), plus two controls: a randomly initialised frozen CNN and raw pixel patches.
For each, `image_text` shows text OOD accuracy (the table's metric), image accuracy on ID prompts, and how well the grounding readouts work:"""),
    ("code", """from bindlib.book.plots import encoder_chart

enc_rows = regimes.encoder_table(records)
for r in enc_rows:
    print(f"{r['encoder']:>12} ({r['seeds']} seed{'s' if r['seeds'] > 1 else ''}): text OOD {r['ood_accuracy']:.1%}, "
          f"image ID {r['image_id_accuracy']:.1%}, colour from region {r['color_from_region']:.1%}, "
          f"shape from region {r['shape_from_region']:.1%}, region from colour {r['region_from_color']:.1%}")
encoder_chart(enc_rows)"""),
    ("md", """All four encoders leave image accuracy at guessing. What differs between runs is how much of the *text* skill survives the image stage. Run by run:"""),
    ("code", """def fate(r):
    return "survived" if r["id_accuracy"] >= 0.9 else ("collapsed" if r["id_accuracy"] < 0.5 else "partly")

image_runs = [r for r in records if r["regime"] in regimes.IMAGE_REGIMES and r.get("grounding")]
encoders_seen = sorted({r["encoder"] for r in image_runs})
both_sides = True
for regime in regimes.IMAGE_REGIMES:
    for enc in encoders_seen:
        rs = sorted((r for r in image_runs if r["regime"] == regime and r["encoder"] == enc), key=lambda r: r["seed"])
        print(f"{regime:>16} {enc:>12}: " + ", ".join(f"s{r['seed']} {fate(r)} (text ID {r['id_accuracy']:.0%})" for r in rs))
        if regime == "image_text":
            both_sides &= {"survived", "collapsed"} <= {fate(r) for r in rs}
print("image_text: every encoder has a run that survived and one that collapsed" if both_sides else
      "image_text: some encoder has runs of one kind only")"""),
    ("md", """Where the last line says every encoder has both kinds of run, the encoder does not decide whether the text skill survives, and the differences between the encoder means above mostly count how many of their three seeds were lucky.

## Grounding on and off

The ablation re-runs `image_text` for one seed with the grounding loss switched off; everything else is equal. The grounding readouts are measured either way (they are untrained without grounding):"""),
    ("code", """pair = {r.get("grounding"): r for r in records if r["regime"] == "image_text" and r["seed"] == 0
        and r["encoder"] == regimes.MAIN_ENCODER}
for flag, label in ((True, "with grounding"), (False, "without grounding")):
    if flag in pair:
        r = pair[flag]
        g = r["grounding_accuracy"]
        print(f"{label:>18}: text OOD {r['ood_accuracy']:.1%}, image ID {r['image_id_accuracy']:.1%}, "
              f"colour from region {g['color_from_region']:.1%}, region from colour {g['region_from_color']:.1%}")
grounded = [r["ood_accuracy"] for r in records if r["regime"] == "image_text" and r["encoder"] == regimes.MAIN_ENCODER
            and r["grounding"]]
if False in pair and grounded:
    off = pair[False]["ood_accuracy"]
    inside = min(grounded) <= off <= max(grounded)
    print(f"text OOD without grounding {off:.1%}; with grounding, over {len(grounded)} seeds: "
          f"{min(grounded):.1%} to {max(grounded):.1%} -> {'inside' if inside else 'outside'} the seed range")"""),
    ("md", """Grounding does what it is trained for (the readouts above), but one ablation seed cannot separate its effect on the table's metric from the seed-to-seed spread: the last line says whether the ungrounded run falls inside the grounded seeds' range.

## A longer image stage (exploratory)

Is the image task unlearnable here, or only under-trained? One extra run gives `image_text` (seed 0, project CNN) three times the post-text steps: `python -m bindlib reproduce --profile cpu --regimes image_text --seeds 0 --steps-scale 3`. Its results file is named `..._steps3x` and stays out of the table above:"""),
    ("code", """longer = [r for r in regimes.regime_results("cpu", steps_scale=None) if r.get("steps_scale", 1.0) != 1.0]
base = {(r["regime"], r["encoder"], r["seed"]): r for r in records if r.get("grounding") in (True, None)}
for r in longer:
    ref = base.get((r["regime"], r["encoder"], r["seed"]))
    for label, x in (("table run", ref), (f"{r['steps_scale']:g}x steps", r)):
        if x is not None:
            print(f"{r['regime']} s{r['seed']} {label:>10} ({x['steps_after_text']} steps after text): "
                  f"image ID {x['image_id_accuracy']:.1%} (chance {chance_id:.1%}), text ID {x['id_accuracy']:.1%}, "
                  f"text OOD {x['ood_accuracy']:.1%}, shape from region {x['grounding_accuracy']['shape_from_region']:.1%}")
if not longer:
    print("no exploratory run in data/results yet")"""),
    ("code", """from bindlib.book.plots import training_curves_chart

training_curves_chart(longer[0]["history"] if longer else [],
                      title="The longer run: image and text accuracy through the image and mix stages (ID prompts)")"""),
    ("md", """## What it cost

Every results file records its wall time; the image runs also record how much of it went to rendering and encoding pictures (the feature cost that a cache would remove):"""),
    ("code", """cost = {}
for r in records:
    if r["steps_after_text"]:
        c = cost.setdefault(r["regime"], {"sps": [], "enc": []})
        c["sps"].append(r["provenance"]["steps_per_second"])
        if "encoder_seconds" in r:
            c["enc"].append(r["encoder_seconds"] / r["provenance"]["train_seconds"])
for regime, c in cost.items():
    share = f", rendering + encoding {sum(c['enc']) / len(c['enc']):.0%} of training time" if c["enc"] else ""
    print(f"{regime:>18}: {sum(c['sps']) / len(c['sps']):.2f} steps/s ({len(c['sps'])} runs){share}")
devices = sorted({r["provenance"]["device"] for r in records})
print("devices:", "; ".join(devices))"""),
    ("md", """## Why the image rows look the way they do

Three measurements explain most of what the table shows. First, how well the image regimes answer *image* prompts, against guessing; second, how much shape information the frozen encoders carry at all (their held-out per-patch accuracy from pretraining, chapter 3); third, what the pure-image stage does to the text skill before the mix stage brings text back:"""),
    ("code", """from bindlib.io import load_results

chance = sum(1 / n for n in range(task.id_range[0], task.id_range[1] + 1)) / (task.id_range[1] - task.id_range[0] + 1)
for regime in regimes.IMAGE_REGIMES:
    rs = [r for r in records if r["regime"] == regime and r["encoder"] == regimes.MAIN_ENCODER and r["grounding"]]
    if rs:
        img = sum(r["image_id_accuracy"] for r in rs) / len(rs)
        low = min(min(h["acc_two_hop"] for h in r["history"] if h["stage"] == "image") for r in rs)
        end = sum(r["history"][-1]["acc_two_hop"] for r in rs) / len(rs)
        print(f"{regime}: image-prompt ID accuracy {img:.1%} (chance {chance:.1%}); text two-hop ID accuracy fell to "
              f"{low:.1%} during the image stage and ended at {end:.1%} after the mix stage")
for enc in load_results("encoder_*_cpu.json", kind="encoder_pretraining"):
    h = enc["held_out"]
    print(f"{enc['encoder']}: held-out object patches: colour {h['color_object']:.1%}, shape {h['shape_object']:.1%}")"""),
    ("md", "DISCUSSION"),
    ("md", """## Exercise: are noise tokens really invisible?

Write `noise_leak(model, batch)`: run the model on a noised batch, then again after replacing every `NOISE` token (id `bindlib.task.NOISE`) by other token ids, and return the largest absolute change of the logits at positions the key mask allows (`batch.key_mask`).
`check_noise_leak` runs it on a model whose key mask hides the noise (your answer must be about zero) and on the same prompts with the mask switched on everywhere (your answer must be clearly positive)."""),
    ("code", """from bindlib.book.exercises import check_noise_leak


def noise_leak(model, batch) -> float:
    # Your code here.
    return 0.0


try:
    print(check_noise_leak(noise_leak))
except AssertionError as failure:
    print(failure)"""),
    ("md", "A solution is hidden below; click to reveal it."),
    ("solution", """import torch
from bindlib.task import NOISE


def noise_leak(model, batch) -> float:
    other = batch.tokens.clone()
    noise = other == NOISE
    other[noise] = 9  # any non-noise token
    with torch.no_grad():
        a = model(batch.tokens, batch.position_ids, batch.key_mask)
        b = model(other, batch.position_ids, batch.key_mask)
    seen = batch.key_mask
    return (a[seen] - b[seen]).abs().max().item()


print(check_noise_leak(noise_leak))"""),
]


def build(discussion: str) -> nbformat.NotebookNode:
    cells = []
    for kind, src in CELLS:
        if kind == "md":
            cells.append(new_markdown_cell(discussion if src == "DISCUSSION" else src))
        elif kind == "solution":
            cells.append(new_code_cell(src, metadata={"tags": ["hide-cell"]}))
        else:
            cells.append(new_code_cell(src))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    discussion = (here / "chapter4_discussion.md").read_text()
    nbformat.write(build(discussion), here.parent / "chapters" / "04_curriculum.ipynb")
    print("wrote chapters/04_curriculum.ipynb")
