"""Linear probes of residual activations, with a control task and a random-initialisation baseline."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.task import Batch, TaskConfig, make_generator, sample_batch, seeded
from ..vision.encoders import encode_in_chunks
from ..vision.pretrain import EVAL_SEED, IGNORE, patch_labels
from ..vision.render import RenderConfig, render_batch
from .pairs import RESIDUAL_HOOKS, _rows, n_layers_of, traced

# ============================================================== 5. linear probes
ROLES = ("color", "shape", "assoc_shape", "item", "last")
OBJECT_TARGETS = ("index", "bound_color")  # at colour / shape / association tokens
LAST_TARGETS = ("target_shape", "target_index", "answer")  # at the read-out token


def role_positions(batch: Batch, role: str):
    """(positions [B, K], object index [B, K], valid [B, K]) of the tokens playing ``role``.

    color / shape: the declaration tokens; assoc_shape / item: the association tokens (object k's
    shape and item); last: the read-out token, standing for the queried object.
    """
    if role == "last":
        return batch.query_pos[:, None], batch.query_slot[:, None], torch.ones_like(batch.query_pos[:, None], dtype=torch.bool)
    field = {"color": "color_pos", "shape": "shape_pos", "assoc_shape": "assoc_shape_pos", "item": "assoc_item_pos"}
    if role not in field:
        raise ValueError(f"unknown role {role!r}: allowed {ROLES}.")
    valid = batch.colors >= 0
    obj = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    return getattr(batch, field[role]).clamp(min=0), obj, valid


def probe_labels(batch: Batch, role: str, target: str, obj: torch.Tensor, n_random: int, g) -> tuple[torch.Tensor, int]:
    """Labels [B, K] and the number of classes of a probing target.

    index: declaration slot of the object; bound_color: the colour bound to the object (the binding
    signature at shape positions); target_shape / target_index / answer: the queried object's shape,
    slot and item (at the read-out token); random: i.i.d. uniform labels (a sanity control).
    """
    v = batch.vocab
    if target == "random":
        return torch.randint(n_random, obj.shape, generator=g, device=obj.device), n_random
    allowed = LAST_TARGETS if role == "last" else OBJECT_TARGETS
    if target not in allowed:
        raise ValueError(f"target {target!r} is not defined at role {role!r}: allowed {allowed + ('random',)}.")
    if target in ("index", "target_index"):
        return obj, batch.colors.shape[1]
    if target == "bound_color":
        return batch.colors.gather(1, obj) - v.color_offset, v.n_colors
    if target == "target_shape":
        return batch.shapes.gather(1, obj) - v.shape_offset, v.n_shapes
    return batch.items.gather(1, obj) - v.item_offset, v.n_items


def identity_split(batch: Batch, obj: torch.Tensor, test_frac: float = 0.4, seed: int = 0):
    """Train/test masks [B, K] such that no colour-shape and no shape-item combination is shared.

    Each colour-shape and each shape-item combination is drawn into the test side with probability
    ``test_frac`` (seeded); an example goes to test if both combinations of its object are test
    combinations, to train if neither is, and is dropped otherwise.
    """
    v = batch.vocab
    g = make_generator(seed)
    cs = torch.rand(v.n_colors, v.n_shapes, generator=g) < test_frac
    si = torch.rand(v.n_shapes, v.n_items, generator=g) < test_frac
    c = (batch.colors.gather(1, obj) - v.color_offset).clamp(min=0).cpu()
    s = (batch.shapes.gather(1, obj) - v.shape_offset).clamp(min=0).cpu()
    i = (batch.items.gather(1, obj) - v.item_offset).clamp(min=0).cpu()
    a, b = cs[c, s], si[s, i]
    dev = obj.device
    return (~a & ~b).to(dev), (a & b).to(dev)


@torch.no_grad()
def collect_activations(model, batch: Batch, hook: str, positions: torch.Tensor) -> torch.Tensor:
    """Activations [n_layers, B, K, D] of ``blocks[l].<hook>`` at the given positions [B, K]."""
    if hook not in RESIDUAL_HOOKS:
        raise ValueError(f"unknown residual hook {hook!r}: allowed {RESIDUAL_HOOKS}.")
    rows = _rows(positions)[:, None]
    saved = []
    nm = traced(model)
    with nm.trace(**batch.model_inputs()):
        for layer in range(n_layers_of(model)):
            saved.append(getattr(nm.blocks[layer], hook).output[rows, positions].save())
    return torch.stack(saved)


def fit_logistic(X: torch.Tensor, y: torch.Tensor, n_classes: int, C=1.0, max_iter: int = 100,
                 rows: torch.Tensor | None = None):
    """Multinomial logistic regression with L2, by L-BFGS.

    Minimises mean cross-entropy + |W|^2 / (2 C n), sklearn's C (inverse regularisation strength).
    ``rows`` [P, n] bool (with C a scalar or P values) fits P independent problems, each on its own
    rows, in one optimisation: their losses add up and share no parameter, so the joint minimum is
    each problem's minimum, at the Python cost of a single fit.  Returns W [P, D, K] and b [P, K].
    """
    rows = torch.ones(1, len(y), dtype=torch.bool) if rows is None else rows
    P, (n, d) = rows.shape[0], X.shape
    weight = rows.float() / rows.sum(1, keepdim=True).clamp(min=1)  # [P, n]: each problem's mean
    ridge = 1.0 / (2 * torch.as_tensor(C, dtype=X.dtype).expand(P) * rows.sum(1).clamp(min=1))
    W = torch.zeros(P, d, n_classes, requires_grad=True)
    b = torch.zeros(P, n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    target = y.expand(P, n)

    def closure():
        opt.zero_grad()
        logits = torch.einsum("nd,pdk->pkn", X, W) + b[:, :, None]
        nll = F.cross_entropy(logits, target, reduction="none")  # [P, n]
        loss = (weight * nll).sum() + (ridge * (W * W).sum((1, 2))).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return W.detach(), b.detach()


@dataclass
class LinearProbe:
    mean: torch.Tensor
    std: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    C: float

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return (((X.float().cpu() - self.mean) / self.std) @ self.W + self.b).argmax(-1)

    def accuracy(self, X: torch.Tensor, y: torch.Tensor) -> float:
        return (self.predict(X) == y.cpu()).float().mean().item() if len(y) else float("nan")


def fit_probe(X: torch.Tensor, y: torch.Tensor, n_classes: int, Cs=(0.01, 0.1, 1.0, 10.0), folds: int = 3,
              seed: int = 0, max_iter: int = 50) -> LinearProbe:
    """Standardise, choose C by k-fold cross-validated accuracy, refit on all the training data."""
    X, y = X.float().cpu(), y.cpu()
    mean, std = X.mean(0), X.std(0).clamp(min=1e-6)
    Z = (X - mean) / std
    best_C = Cs[0]
    if len(Cs) > 1:
        fold = torch.randperm(len(y), generator=make_generator(seed)) % folds
        held_out = fold[None, :] == torch.arange(folds)[:, None]  # [folds, n]
        grid = torch.tensor(Cs, dtype=Z.dtype).repeat_interleave(folds)  # problem p: C = grid[p], fold p % folds
        W, b = fit_logistic(Z, y, n_classes, grid, max_iter, rows=~held_out.repeat(len(Cs), 1))
        hit = (torch.einsum("nd,pdk->pnk", Z, W) + b[:, None]).argmax(-1) == y
        val_acc = (hit & held_out.repeat(len(Cs), 1)).sum(1) / held_out.sum(1).repeat(len(Cs))
        best_C = Cs[int(val_acc.view(len(Cs), folds).mean(1).argmax())]
    W, b = fit_logistic(Z, y, n_classes, best_C, max_iter)
    return LinearProbe(mean, std, W[0], b[0], best_C)


def random_init_twin(model, seed: int = 0):
    """The same architecture at random initialisation (for a Transformer), without touching the global RNG."""
    with seeded(seed):
        twin = type(model)(model.cfg)
    return twin.to(next(model.parameters()).device).eval()


def probe(model, task: TaskConfig, layer_hook: str = "hook_resid_pre", role: str = "shape", target: str = "index", *,
          n_prompts: int = 1024, n: int | tuple[int, int] | None = None, seed: int = 0,
          association_order: str = "shuffled", Cs=(0.01, 0.1, 1.0, 10.0), folds: int = 3, test_frac: float = 0.4,
          control: bool = True, random_init: bool = True, n_random: int = 8, max_iter: int = 50,
          device="cpu") -> dict:
    """Linear probes of ``target`` at tokens of ``role``, on ``blocks[l].<layer_hook>`` for every layer.

    Train/test split by object identity (``identity_split``).  Controls: a Hewitt & Liang control
    task (each token type gets a fixed random label; selectivity = accuracy - control accuracy),
    and the same probe on the same architecture at random initialisation.  ``chance`` is the
    majority-class share of the test set.  Because test combinations never occur in training, a
    probe that decodes a partner through the token's own identity (e.g. the colour through the shape
    it sits on) is systematically wrong on test and can score below chance: compare with the
    random-initialisation baseline, which shows that floor.
    """
    batch = sample_batch(task, n_prompts, seed, n=n if n is not None else task.id_range,
                         association_order=association_order, device=device)
    g = make_generator(int(seed) + 1, device)
    positions, obj, valid = role_positions(batch, role)
    labels, n_classes = probe_labels(batch, role, target, obj, n_random, g)
    train, test = identity_split(batch, obj, test_frac, seed)
    train, test = train & valid, test & valid
    token_type = batch.tokens.gather(1, positions)
    control_labels = torch.randint(n_classes, (batch.vocab.size,), generator=g, device=device)[token_type]

    def fit_all(acts, y):
        return [fit_probe(a[train], y[train], n_classes, Cs, folds, seed, max_iter) for a in acts]

    acts = collect_activations(model, batch, layer_hook, positions)
    rows = [{"layer": layer, "accuracy": pr.accuracy(a[test], labels[test]), "C": pr.C}
            for layer, (pr, a) in enumerate(zip(fit_all(acts, labels), acts))]
    if control:
        for row, pr, a in zip(rows, fit_all(acts, control_labels), acts):
            row["control_accuracy"] = pr.accuracy(a[test], control_labels[test])
            row["selectivity"] = row["accuracy"] - row["control_accuracy"]
    if random_init:
        twin_acts = collect_activations(random_init_twin(model, seed), batch, layer_hook, positions)
        for row, pr, a in zip(rows, fit_all(twin_acts, labels), twin_acts):
            row["random_init_accuracy"] = pr.accuracy(a[test], labels[test])
    counts = torch.bincount(labels[test].cpu(), minlength=n_classes)
    return {"hook": layer_hook, "role": role, "target": target, "n_classes": n_classes,
            "n_train": int(train.sum()), "n_test": int(test.sum()),
            "chance": (counts.max() / counts.sum()).item() if counts.sum() else float("nan"), "layers": rows}


# ---------------------------------------------------------------- what a frozen encoder's tokens carry
def probe_encoders(encoders, n_train: int = 400, n_test: int = 200, steps: int = 100, lr=None, seed: int = 0,
                   task: TaskConfig | None = None, min_pixels: int = 16, Cs=(1.0,)) -> dict[str, dict]:
    """Fit linear colour and shape probes (``fit_probe``) on each frozen encoder's patch tokens; score them on
    held-out scenes.

    ``encoders``: a list of FrozenEncoder. Labels are the pretraining ones (``vision.pretrain.patch_labels``), at
    each encoder's canvas and patch; scenes are rendered once per (canvas, patch) and shared. Training uses every
    object patch and as many background patches (background is easy and would dominate). ``steps`` caps the
    L-BFGS iterations; ``lr`` is accepted for old callers and unused (L-BFGS picks its own steps). Returns
    {encoder name: held-out accuracies on object patches (``color_object``, ``shape_object``) and on all
    labelled patches (``*_all``)}.
    """
    task = task or TaskConfig()
    scenes: dict[tuple[int, int], list] = {}
    results = {}
    for encoder in encoders:
        key = (encoder.image_size, encoder.patch)
        if key not in scenes:
            render_cfg, scenes[key] = RenderConfig(canvas_size=encoder.image_size), []
            for n, s in ((n_train, EVAL_SEED + 1 + seed), (n_test, EVAL_SEED + 2 + seed)):
                batch = sample_batch(task, n, seed=s, n=(1, 8))
                images, boxes = render_batch(batch, render_cfg, seed=s)
                scenes[key].append((images, *patch_labels(batch, boxes, render_cfg, encoder.patch, min_pixels)))

        def labelled(images, colors, shapes):
            keep = colors.flatten() != IGNORE
            return encode_in_chunks(encoder, images).flatten(0, 1)[keep], colors.flatten()[keep], shapes.flatten()[keep]

        (x_tr, c_tr, s_tr), (x_te, c_te, s_te) = (labelled(*part) for part in scenes[key])
        obj_tr = c_tr != task.n_colors
        background = torch.nonzero(~obj_tr).flatten()
        background = background[torch.randperm(len(background), generator=make_generator(seed))[: int(obj_tr.sum())]]
        rows = torch.cat([torch.nonzero(obj_tr).flatten(), background])
        out = {}
        for what, y_tr, y_te, n_cls in (("color", c_tr, c_te, task.n_colors), ("shape", s_tr, s_te, task.n_shapes)):
            pred = fit_probe(x_tr[rows], y_tr[rows], n_cls + 1, Cs=Cs, seed=seed, max_iter=steps).predict(x_te)
            obj = y_te != n_cls
            out[f"{what}_object"] = round(float((pred[obj] == y_te[obj]).float().mean()), 4)
            out[f"{what}_all"] = round(float((pred == y_te).float().mean()), 4)
        out["object_patches"] = int((c_te != task.n_colors).sum())
        results[encoder.name] = out
    return results
