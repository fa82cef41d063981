#!/usr/bin/env python
"""Write chapters/03_seeing.ipynb from this outline (then execute it and run scripts/colab.py).

The chapter's prose lives here so it can be edited as text; the notebook is what readers run.
    python scripts/build_chapter3.py && OMP_NUM_THREADS=1 jupyter execute --inplace chapters/03_seeing.ipynb \\
        && python scripts/colab.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HIDE = "hide"  # a code cell whose input is folded away (the exercise's solution)

CELLS = [
    ("md", """# Seeing the task

The paper's remedy for the positional shortcut is to show the model the same task as a picture.
The context that chapter 1 wrote as `c1 s1 c2 s2 ... cN sN` is drawn instead: $N$ coloured shapes scattered over a canvas.
A frozen visual encoder cuts the picture into patches and turns each patch into a token, and those tokens take the place of the context's words.
The associations and the query stay text.

Before any model trains on pictures (that is chapter 4), this chapter looks hard at what the model will receive.
How is a context drawn? What does an encoder hand over? And the question the whole paper turns on: what, in a picture, is left of the order in which the objects were declared?"""),
    ("md", """## From a context to a picture

`bindlib.render` draws every context procedurally, with numpy only.
Two image profiles fix the sizes: the book runs the **cpu** profile everywhere, a small canvas that keeps encoding cheap; the **paper** profile is the 224-pixel input of the paper's encoders.
Everything else (object size, margin, the least gap between objects) scales with the canvas:"""),
    ("code", """from bindlib.vision.encoders import RENDER_PROFILES

for name, cfg in RENDER_PROFILES.items():
    side = cfg.canvas_size // 16
    print(f"{name:>5}: canvas {cfg.canvas_size} px, objects {cfg.object_size} px, margin and gap {cfg.margin} px, "
          f"room for {cfg.capacity} objects; 16 px patches -> {side} x {side} = {side * side} tokens")

render_cfg = RENDER_PROFILES["cpu"]
PATCH = 16  # the patch side of every cpu-profile encoder
side = render_cfg.canvas_size // PATCH"""),
    ("md", """### The shapes

Shapes come from a procedural family: six kinds (polygons, stars, flowers, gears, crosses, rings), each with twelve counts of vertices, petals, teeth or arms, each solid, hollow or split.
The book's default vocabulary uses the first 16, ordered so that a short prefix changes kind before it changes count.
Here they are at the size the cpu profile draws them, in black on the background grey, so that only shape tells them apart:"""),
    ("code", """from bindlib.book.scenes import image_grid_chart
from bindlib.vision.render import shape_image
from bindlib.task import TaskConfig, shape_family

task = TaskConfig()
family = shape_family()
vocab_shapes = family[: task.n_shapes]
image_grid_chart([shape_image(spec, size=render_cfg.object_size) for spec in vocab_shapes],
                 [spec["name"] for spec in vocab_shapes], columns=8, scale=4,
                 title=f"The {task.n_shapes} shapes of the default vocabulary, at {render_cfg.object_size} px")"""),
    ("md", """A larger vocabulary (the paper ends at 216 shapes) draws from the whole family. Hover over a tile for its name:"""),
    ("code", """from bindlib.task import SHAPE_KINDS, SHAPE_STYLES

per_style = len(family) // len(SHAPE_STYLES)
image_grid_chart([shape_image(spec, size=render_cfg.object_size) for spec in family], [spec["name"] for spec in family],
                 columns=per_style // 3, scale=2, label_size=0,
                 title=f"All {len(family)} shapes: {len(SHAPE_KINDS)} kinds x {per_style // len(SHAPE_KINDS)} counts, "
                       f"then again {' and '.join(SHAPE_STYLES[1:])} (three rows per style)")"""),
    ("md", """### A prompt and its picture

`render_batch` draws the context of every prompt in a batch, each at a fresh random layout, and returns the boxes it placed the objects in.
Object $k$ of the picture is the $k$-th declared object of the text; the numbers on the boxes below are that declaration order, which the picture itself does not show:"""),
    ("code", """from bindlib.book.exercises import prompt_strings
from bindlib.book.scenes import scene_chart, text_panel_chart
from bindlib.vision.render import batch_objects, render_batch
from bindlib.task import sample_batch

batch = sample_batch(task, 1, seed=5, n=5)
images, boxes = render_batch(batch, render_cfg, seed=5)
names = task.vocab.names()
n_obj = int(batch.n_objects[0])
declared = [f"object {k + 1}: {names[int(batch.colors[0, k])]} {names[int(batch.shapes[0, k])]}" for k in range(n_obj)]
rgb, _ = batch_objects(batch, 0)

print(" ".join(prompt_strings(batch, 0)))
text_panel_chart(declared, title="the context, as text", colors=["#%02x%02x%02x" % c for c in rgb]) | scene_chart(
    images[0], boxes[0], labels=[str(k + 1) for k in range(n_obj)], scale=3, title="the same context, as a picture")"""),
    ("md", """### More objects, same canvas

In text, each object costs four tokens, so a prompt with 16 objects is almost twice as long as one with 8.
A picture has as many patches whatever it shows: more objects only crowd the same canvas.
Scenes with $N$ from 1 to 16, ID and OOD alike:"""),
    ("code", """counts = [1, 2, 4, 8, 12, 16]
scenes = [render_batch(sample_batch(task, 1, seed=n, n=n), render_cfg, seed=n)[0][0] for n in counts]
split_names = {"id": "ID", "ood": "OOD", None: "neither split"}
image_grid_chart(scenes, [f"N = {n} ({split_names[task.split_of(n)]})" for n in counts],
                 columns=6, scale=2, title="One scene per N: the canvas never grows")"""),
    ("md", """## Encoders: from pixels to tokens

A frozen encoder maps a batch of images `[B, 3, H, W]` to patch tokens `[B, T, D]`.
`bindlib.encoders` has one registry for all of them, in three families:"""),
    ("code", """from bindlib.vision import encoders as E

families = {"paper's encoders (Hugging Face weights)": [n for n in E.ENCODERS if n in E.HUB_SPECS],
            "controls (no weights)": ["random_cnn", "pixels"],
            "project encoders (pretrained here, in data/encoders)": list(E.PROJECT_CONFIGS)}
for family_name, members in families.items():
    print(f"{family_name}: {', '.join(members)}")"""),
    ("md", """### The paper's encoders, and what happens offline

According to secondary summaries of the paper, it used three frozen encoders pretrained on large image collections: ResNet-152, ViT-B/16 and DINOv3, each producing about 196 patch tokens from a 224-pixel image.
The book keeps working code for all three, through the `transformers` classes, but the machines this book was built on cannot download their weights.
So what happens when we ask for one? The loader looks in a local folder, then in the Hugging Face cache, and, with downloading off (the default), stops there with a message that says how to get the weights.
Live (on a machine that has the weights, this cell loads them instead):"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import textwrap

for name in E.paper_encoders():
    try:
        encoder = E.get_encoder(name)
        print(f"{name}: loaded from {encoder.weights_id}: {encoder.n_tokens()} tokens of width {encoder.dim}")
    except E.EncoderUnavailable as err:
        print(textwrap.fill(f"{name}: {err}", 110, subsequent_indent="    "), end="\\n\\n")"""),
    ("md", """The code path is the same with random weights, which needs no download: the same model classes, built small from a config, turn a 224-pixel scene into 196 tokens.
That is how the unit tests check the paper's encoders offline:"""),
    ("code", """import torch

paper_scene, _ = render_batch(sample_batch(task, 1, seed=1, n=6), RENDER_PROFILES["paper"], seed=1)
for name in ("resnet152", "vit_b16"):
    tiny = E.from_config(name, E.tiny_config(name))
    tokens = tiny.encode(paper_scene)
    print(f"{name} (tiny, random weights): image {tuple(paper_scene.shape)} -> tokens {tuple(tokens.shape)}")"""),
    ("md", """### The project encoders

Instead of downloaded weights, the book ships two small encoders of its own, a CNN and a ViT, pretrained with one command each:

```bash
python -m bindlib pretrain-encoder --name project_cnn
python -m bindlib pretrain-encoder --name project_vit
```

The pretraining task is supervised and per patch: on scenes of the task's vocabulary, two linear heads on each patch token must name the colour and the shape of the object that covers the patch, or say "background".
Afterwards the heads are thrown away and the trunk is frozen.
How well did they learn? The command records held-out accuracy (scenes with a seed never trained on) in `data/results`:"""),
    ("code", """from bindlib.io import load_results

pretraining = {r["encoder"]: r for r in load_results("encoder_*_cpu.json", kind="encoder_pretraining")}
print(f"{'encoder':>12} {'steps':>6} {'wall':>7}  {'stopped':>14}   object patches: colour  shape   all patches: colour  shape")
for name, r in pretraining.items():
    h = r["held_out"]
    print(f"{name:>12} {r['steps']:>6} {r['provenance']['wall_seconds'] / 60:>5.1f} min {r['stopped']:>15}"
          f"{h['color_object']:>24.1%} {h['shape_object']:>6.1%} {h['color_all']:>20.1%} {h['shape_all']:>6.1%}")
print(f"\\nheld out: {h['scenes']} scenes, {h['object_patches']} object patches, {h['labelled_patches']} labelled patches "
      f"({h['ignored_patches']} ambiguous patches with only a sliver of an object left out)")
for name, r in pretraining.items():
    cfg_p = r["pretrain_config"]
    verdict = ("reached" if r["stopped"] == "target_reached" else
               f"was stopped by its {cfg_p['time_budget_s']:.0f} s budget before reaching")
    print(f"{name} {verdict} the {cfg_p['target']:.0%} target; shape on object patches {r['held_out']['shape_object']:.1%} "
          f"against {1 / task.n_shapes:.1%} for a guess among {task.n_shapes} shapes")"""),
    ("code", """from bindlib.book.plots import line_chart

curve = [{"step": row["step"], "accuracy": row[f"{head}_object"], "curve": f"{name}, {head}"}
         for name, r in pretraining.items() for row in r["history"] for head in ("color", "shape")]
line_chart(curve, "step", "accuracy", "curve", "Pretraining: held-out accuracy on object patches", y_format="%")"""),
    ("md", """Colour is learned almost at once: a patch's colour is in its pixels.
Shape is the slow part, and for a good reason: an object of 16 pixels usually straddles four patches, so a token has to recognise a shape from a corner of it plus what its receptive field (the CNN) or its attention (the ViT) brings in from the neighbours.
The curves are still rising when the budget ends: these encoders are under-trained for shape, the ViT more than the CNN, and chapter 4's models work with exactly the features measured here.
A longer run is one flag away (`--time-budget`), at the price of re-encoding every image set."""),
    ("md", """### The controls

Two encoders bracket the project ones. The **random CNN** has the project CNN's architecture with untrained, fixed random weights: features that preserve the picture's layout but were never taught anything.
**Raw pixels** skip the encoder entirely: each token is a patch's 16 x 16 x 3 pixel values, and only the trainable projector of chapter 4 sits between them and the transformer.
`profile_encoder` sets any of them up for a profile; at the cpu profile all four give 49 tokens:"""),
    ("code", """scene = images  # the five-object scene from above
print(f"{'encoder':>12} {'tokens':>7} {'width':>6} {'parameters':>11}  weights")
for name in ("project_cnn", "project_vit", "random_cnn", "pixels"):
    encoder = E.profile_encoder(name, profile="cpu")
    tokens = encoder.encode(scene)
    n_params = sum(p.numel() for p in encoder.parameters())
    print(f"{name:>12} {tokens.shape[1]:>7} {tokens.shape[2]:>6} {n_params:>11,}  {encoder.weights_id[:60]}")"""),
    ("md", """### What the tokens carry

The pretraining table scored each trunk with the heads it was trained with. To compare all four encoders on an equal footing, fit fresh linear heads on their frozen tokens (a *linear probe*) for the same per-patch colour and shape labels, and score them on held-out scenes.
`probe_encoders` does it in one call; it is kept small (a few hundred scenes, a short fit) so that it runs in seconds, which makes its numbers rough:"""),
    ("code", """# NBVAL_IGNORE_OUTPUT (the fit's last digits can change with the number of CPU threads)
from bindlib.book.plots import split_summary_chart
from bindlib.vision.pretrain import probe_encoders

four = [E.profile_encoder(name, profile="cpu") for name in ("project_cnn", "project_vit", "random_cnn", "pixels")]
probe = probe_encoders(four, n_train=200, n_test=100, steps=60, lr=0.2)
for name, acc in probe.items():
    print(f"{name:>12}: colour {acc['color_object']:.0%}, shape {acc['shape_object']:.0%} on {acc['object_patches']} held-out object patches")
print(f"{'guessing':>12}: colour {1 / task.n_colors:.0%}, shape {1 / task.n_shapes:.0%}")"""),
    ("code", """probe_rows = [{"source": name, "split": attribute, "accuracy": acc[f"{attribute}_object"]}
              for name, acc in probe.items() for attribute in ("color", "shape")]
split_summary_chart(probe_rows, title="Linear probes on frozen tokens: held-out accuracy on object patches")"""),
    ("md", """Colour can be read off a single token of every encoder, if less cleanly from the random CNN, whose untrained filters mix a patch with its neighbours.
Shape is another matter: from raw pixels and random features a linear head barely beats guessing, and only pretraining puts shape where one token and one linear map can find it.
A probe is a lower bound, though. The transformer of chapter 4 sees all the tokens of a picture at once and has several layers to combine them, so "not linearly readable from one token" does not mean "not in the picture"; the controls exist to find out how much that matters."""),
    ("md", """## Patch tokens

Every encoder here outputs one token per 16 x 16 patch, in row-major order: token 0 is the top-left patch, token 6 the top-right, token 48 the bottom-right.
So a token's index in the sequence is a place in the picture.
Which tokens does an object end up in? `render.patch_grid` lists the patches under each box:"""),
    ("code", """from bindlib.vision.render import patch_grid

cells = patch_grid(boxes[0], render_cfg.canvas_size, PATCH)
for k, patches in enumerate(cells):
    print(f"{declared[k]:<28} box {tuple(int(v) for v in boxes[0][k])} -> patches {patches.tolist()}")
shade = {int(p): declared[k] for k, patches in enumerate(cells) for p in patches}
scene_chart(images[0], boxes[0], labels=[str(k + 1) for k in range(n_obj)], patch=PATCH, patch_numbers=True, shade=shade,
            scale=4, title=f"The {side} x {side} patch grid; shaded: patches under an object's box")"""),
    ("md", """An object is as large as a patch, so it covers exactly one patch only when it happens to sit on the grid in both directions.
How often does each case occur? Over many layouts:"""),
    ("code", """import collections

import numpy as np

from bindlib.vision.render import place_objects

layouts = [place_objects(8, render_cfg, np.random.default_rng((11, i))) for i in range(500)]
covered = collections.Counter(len(p) for corners in layouts
                              for p in patch_grid(np.concatenate([corners, corners + render_cfg.object_size], 1),
                                                  render_cfg.canvas_size, PATCH))
total = sum(covered.values())
for n_patches in sorted(covered):
    print(f"objects spread over {n_patches} patch{'es' if n_patches > 1 else ''}: {covered[n_patches] / total:.1%}")"""),
    ("md", """So a typical object is cut into four pieces, each in a different token, and its neighbours' pieces may share those tokens.
The encoder's job is to make every piece still say which colour and which shape it belongs to.

## Why random placement breaks position

In a text prompt, "the third object" is a place in the sequence: its colour is always token 5 and its shape token 6.
A model can learn to retrieve by that index (positional binding) because the index is always there, and always means the same thing.
Does the picture keep anything like it?

Take one context and draw it three times; only the layout seed changes. The shaded patches are those of object 1:"""),
    ("code", """from bindlib.vision.render import render_scene

colors, shapes = batch_objects(batch, 0)
first = declared[0]
charts = []
for layout_seed in (0, 1, 2):
    image, scene_boxes = render_scene(colors, shapes, render_cfg, seed=layout_seed)
    mine = patch_grid(scene_boxes[:1], render_cfg.canvas_size, PATCH)[0]
    print(f"layout {layout_seed}: {first} covers patches {mine.tolist()}")
    charts.append(scene_chart(image, scene_boxes, labels=[str(k + 1) for k in range(n_obj)], patch=PATCH,
                              shade={int(p): first for p in mine}, scale=2, title=f"layout seed {layout_seed}"))
charts[0] | charts[1] | charts[2]"""),
    ("md", """Same object, same declaration slot, three different sets of tokens.
To see it systematically, compare where the $k$-th declared object lands in the two modalities, over thousands of ID prompts.
In text, its colour and shape tokens sit at fixed positions:"""),
    ("code", """text_batch = sample_batch(task, 4000, seed=21, split="id")
valid = text_batch.color_pos >= 0
slot_index = torch.arange(text_batch.color_pos.shape[1]).expand_as(text_batch.color_pos)
text_rows = []
for k in range(task.id_range[1]):
    in_slot = valid[:, k]
    color_positions = sorted(set(text_batch.color_pos[in_slot, k].tolist()))
    shape_positions = sorted(set(text_batch.shape_pos[in_slot, k].tolist()))
    print(f"slot {k + 1}: colour at positions {color_positions}, shape at {shape_positions}   ({int(in_slot.sum())} prompts)")
    for pos in range(1, 2 * task.id_range[1] + 1):
        share = float(((text_batch.color_pos[in_slot, k] == pos) | (text_batch.shape_pos[in_slot, k] == pos)).float().mean())
        text_rows.append({"slot": k + 1, "position": pos, "share": share})"""),
    ("md", """One position each, for every prompt: colour at $1 + 2k$ and shape at $2 + 2k$ for slot $k$ counted from 0.
Now pictures: for the same prompts, the patch under the centre of the $k$-th object, from layouts drawn exactly as `render_batch` draws them:"""),
    ("code", """def centre_patch(box):
    x0, y0, x1, y1 = box
    return int((y0 + y1) // 2 // PATCH * side + (x0 + x1) // 2 // PATCH)


image_slots, image_patches = [], []
for i in range(len(text_batch)):
    n = int(text_batch.n_objects[i])
    corners = place_objects(n, render_cfg, np.random.default_rng((21, i)))  # render_batch's layout of row i
    for k, (x, y) in enumerate(corners):
        image_slots.append(k)
        image_patches.append(centre_patch((x, y, x + render_cfg.object_size, y + render_cfg.object_size)))
image_slots, image_patches = np.array(image_slots), np.array(image_patches)

image_rows = []
for k in range(task.id_range[1]):
    here = image_patches[image_slots == k]
    counts = np.bincount(here, minlength=side * side) / len(here)
    print(f"slot {k + 1}: centre in {np.count_nonzero(counts)} of the {side * side} patches; "
          f"the most frequent holds {counts.max():.1%}, the least {counts.min():.1%}")
    image_rows += [{"slot": k + 1, "patch": p, "share": float(counts[p]), "row": p // side, "col": p % side}
                   for p in range(side * side)]"""),
    ("code", """from bindlib.book.scenes import heatmap_chart

(heatmap_chart(text_rows, "position", "slot", "share", "Text: where the k-th object's tokens are",
               x_title="token position", y_title="declaration slot", width=260, height=200)
 | heatmap_chart(image_rows, "patch", "slot", "share", "Image: where the k-th object's centre is",
                 x_title=f"patch index (token position among the {side * side})", y_title="declaration slot",
                 width=520, height=200))"""),
    ("md", """The text panel is a staircase: each slot owns two positions, and no other slot ever uses them.
The image panel is a smear: every slot is found in every patch, a few percent of the time each; border patches come up a little less often, because the margin keeps an object's centre at least half an object away from the edge.
Drawn as the picture itself, one small map per slot:"""),
    ("code", """from bindlib.book.scenes import patch_share_grids_chart

patch_share_grids_chart(image_rows, title=f"Where the k-th declared object sits in the {side} x {side} grid (share of scenes)")"""),
    ("md", """How much of the declaration slot can a reader recover from the position alone?
Learn, on half of the prompts, the most frequent slot for each position (or patch), and score that guess on the other half.
The baseline is to guess slot 1 every time:"""),
    ("code", """def position_guess_accuracy(slots, places):
    half = len(slots) // 2
    best = {}
    for place in np.unique(places[:half]):
        best[place] = np.bincount(slots[:half][places[:half] == place]).argmax()
    guesses = np.array([best.get(p, 0) for p in places[half:]])
    return float((guesses == slots[half:]).mean()), float((slots[half:] == 0).mean())


text_slots = slot_index[valid].numpy()
text_places = text_batch.color_pos[valid].numpy()
order = np.random.default_rng(0).permutation(len(text_slots))  # shuffle so both halves hold every N
text_acc, text_base = position_guess_accuracy(text_slots[order], text_places[order])
order = np.random.default_rng(0).permutation(len(image_slots))
image_acc, image_base = position_guess_accuracy(image_slots[order], image_patches[order])
print(f"text:  slot guessed from the token position: {text_acc:.1%} (always guessing slot 1: {text_base:.1%})")
print(f"image: slot guessed from the centre patch:   {image_acc:.1%} (always guessing slot 1: {image_base:.1%})")"""),
    ("md", """In text, position is the slot; in pictures, position says next to nothing about it.
The picture does not even contain a declaration order: the numbers on the boxes above were ours, and the encoder never sees them.
An image-trained model that is asked about a colour therefore cannot fetch "object number three"; there is no number three. It has to find the patch that *is* that colour and read the shape there, which is retrieval by content, the symbolic binding of chapter 1.
That is the paper's mechanism in one picture. Whether the habit then carries over to text prompts, where the positional route is open again, is what chapter 4 measures."""),
    ("md", """## Exercise: which patches does a box cover?

Write `box_patches(box, canvas, patch)`: the indices of the patches that a box overlaps, numbered row-major as the encoders order their tokens.
A box is `(x0, y0, x1, y1)` in pixels, and its ends are **exclusive**: the box covers columns `x0 .. x1 - 1`.

`check_box_patches(box_patches)` tries edge cases (boxes on patch borders, single pixels, the whole canvas), then object boxes from real layouts, then boxes of random sizes, and stops at the first wrong answer.
The placeholder returns only the patch under the top-left corner, which is right for some boxes; run it to see where it fails, then replace its body.

*Hint*: work out the first and last patch column, and the first and last patch row, that the box touches."""),
    ("code", """from bindlib.book.exercises import check_box_patches


def box_patches(box, canvas=112, patch=16):
    x0, y0, x1, y1 = box
    side = canvas // patch
    # Your code here: every patch the box overlaps, not only its top-left one.
    return [(y0 // patch) * side + x0 // patch]


try:
    check_box_patches(box_patches)
except AssertionError as failure:
    print(failure)"""),
    ("md", """A solution is hidden below; click to reveal it."""),
    (HIDE, """def box_patches(box, canvas=112, patch=16):
    x0, y0, x1, y1 = box
    side = canvas // patch
    cols = range(x0 // patch, (x1 - 1) // patch + 1)  # x1 - 1: the last pixel column inside the box
    rows = range(y0 // patch, (y1 - 1) // patch + 1)
    return [r * side + c for r in rows for c in cols]


check_box_patches(box_patches)"""),
    ("md", """The `- 1` is the whole difficulty: a box ending exactly on a patch border does not reach into the next patch.

## What we chose and why

The paper's image setup is known only in outline (frozen ResNet-152, ViT-B/16 and DINOv3 encoders, about 196 patch tokens, objects placed at random); the rest is ours, and each choice is a setting:

* **A 112-pixel canvas and 49 tokens** (`RENDER_PROFILES["cpu"]`), a quarter of the paper's token count, because every chapter has to run on a laptop CPU. The paper's 224-pixel geometry is `RENDER_PROFILES["paper"]`, with `profile_encoder(name, "paper")` and `pretrain-encoder --profile paper` at that size.
* **Objects one patch wide** (a seventh of the canvas, the renderer's default ratio, which at 224 pixels gives 32-pixel objects over 16-pixel patches). Most objects are then split over four tokens. The paper does not say how large its objects were.
* **Encoders pretrained on the task's own shapes.** The paper's encoders learned generic features from natural images; ours are taught exactly the attributes the task asks about (and, within the CPU budget, learn colour far better than shape). That may make our image regime easier than the paper's in one way and harder in another, and chapter 4 should be read with this in mind. The random CNN and raw pixels are the controls on the other side: no pretraining at all.
* **A five-minute CPU budget per encoder** (`--time-budget`), with an early stop once held-out accuracy on object patches reaches 95% for both colour and shape (the pretraining table says whether it did).
* **Patches with a sliver of an object** (fewer than 16 of their 256 pixels) are left out of the pretraining loss rather than labelled with a guess.
* **A mid-grey background**, which sits at the centre of a cell of the RGB cube, so that every one of the 216 colours, black and white included, differs from it by at least a tenth of the range in every channel (dark greys are still the hardest to see)."""),
]


def build(path: Path) -> None:
    cells = []
    for kind, text in CELLS:
        if kind == "md":
            cells.append(new_markdown_cell(text))
        elif kind == HIDE:
            cells.append(new_code_cell(text, metadata={"tags": ["hide-cell"]}))
        else:
            cells.append(new_code_cell(text))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nbformat.write(nb, path)


if __name__ == "__main__":
    build(Path(__file__).resolve().parents[1] / "chapters" / "03_seeing.ipynb")
