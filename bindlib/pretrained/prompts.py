"""The binding task in natural language, for pretrained Hugging Face causal LMs (chapter 8).

A prompt with N objects (10-40) reads, for example:

    Each object has a colour and a shape, and each shape holds one thing. The red object is a
    triangle. The blue object is a ring. ... The ring holds the coin. The triangle holds the key. ...
    Question: what does the red object hold? Answer: the red object holds the

and the model should continue with " key".  The structure is exactly the small model's
(``bindlib.core.task``): declarations bind a colour to a shape in declaration order (slot k), association
lines bind an item to each shape in a shuffled order, the query names a colour.  Colours, shapes and
items are words that are ONE token (with their leading space) in the model's tokenizer, checked per
tokenizer (``vocabulary``); the token position of every colour, shape and item is found through the
tokenizer's character offsets, never by counting.

Counterfactual pairs follow ``bindlib.interp`` (measurement spec §1): ``interchange_pairs`` (deranged
source, targets POS/SYM/REF/none) and ``rebind_pairs`` (every colour keeps its slot and the query stays;
colours are re-paired with deranged shapes, so only a last token that carries the *bound shape* moves).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..interp.pairs import _random_choice, _random_derangements

COLORS = ("red blue green yellow orange purple pink brown black white gray silver gold cyan violet navy teal "
          "olive maroon beige ivory coral crimson amber indigo lime tan magenta turquoise lavender scarlet peach "
          "mint cream rose copper bronze khaki ruby emerald jade salmon plum azure charcoal lemon cherry mustard "
          "sand rust golden chocolate honey wine ash sky ocean forest ink snow smoke steel sapphire ochre sepia fuchsia "
          "auburn mauve ebony").split()
SHAPES = ("circle square triangle star ring cube cone sphere box disk cross heart diamond arrow oval hexagon "
          "pyramid cylinder moon spiral wheel pillar arch tower bowl cup bottle vase barrel crate basket bucket "
          "jar pot tray plate shell drum bell lamp chair table bench shelf drawer cabinet desk door window tube block "
          "frame panel globe dome cage tent bridge fence").split()
ITEMS = ("key coin book pen apple stone ticket map letter card watch knife rope shoe hat flower leaf feather "
         "candle mirror phone spoon fork needle brush glove ribbon badge medal scarf tooth bone seed egg nut bean "
         "pearl gem sword shield flag whistle compass ladder hammer nail button marble cookie ball doll clock toy bag cap "
         "belt lock mask kite rock").split()

INTRO = "Each object has a colour and a shape, and each shape holds one thing."
DECLARATION = "The {color} object is {article} {shape}."
ASSOCIATION = "The {shape} holds the {item}."
QUESTION = "Question: what does the {color} object hold? Answer: the {color} object holds the"
MIN_OBJECTS, MAX_OBJECTS = 10, 40


def template_words() -> list[str]:
    """Every word and punctuation mark of the templates (for building a word-level tokenizer)."""
    text = " ".join([INTRO, DECLARATION, ASSOCIATION, QUESTION]).replace("{", " ").replace("}", " ") + " a an"
    for p in ".,?:":
        text = text.replace(p, f" {p} ")
    return sorted(set(text.split()) - {"color", "shape", "item", "article"})


def single_token_ids(tokenizer, words) -> dict[str, int]:
    """The words that are one token in context (after "The", with their leading space), with that token's id.

    Checked in context rather than on " word" alone, because SentencePiece-style tokenizers add a
    word-boundary marker to the start of a bare string.
    """
    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prefix = ids("The")
    out = {}
    for w in words:
        full = ids("The " + w)
        if len(full) == len(prefix) + 1 and full[:len(prefix)] == prefix and full[-1] != tokenizer.unk_token_id:
            out[w] = full[-1]
    return out


@dataclass
class Words:
    """Single-token colours, shapes and items of one tokenizer; ``*_ids`` are their token ids."""

    colors: list[str]
    shapes: list[str]
    items: list[str]
    color_ids: list[int] = field(repr=False)
    shape_ids: list[int] = field(repr=False)
    item_ids: list[int] = field(repr=False)

    @property
    def size(self) -> int:
        return min(len(self.colors), len(self.shapes), len(self.items))


def vocabulary(tokenizer, n_max: int = MAX_OBJECTS, name: str = "this tokenizer") -> Words:
    """Colours, shapes and items that are single tokens for ``tokenizer``; at least ``n_max`` of each.

    All three sets of token ids must be disjoint, so that an item prediction is never a colour or shape.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name}'s tokenizer is not a fast (Rust) tokenizer, so it has no character offsets; load it "
                         "with AutoTokenizer.from_pretrained(..., use_fast=True) (needs `pip install sentencepiece`).")
    found = {}
    for role, words in (("colors", COLORS), ("shapes", SHAPES), ("items", ITEMS)):
        found[role] = single_token_ids(tokenizer, words)
        if len(found[role]) < n_max:
            raise ValueError(f"{name} has only {len(found[role])} single-token {role} of {len(words)} candidates, "
                             f"fewer than the {n_max} objects asked for; use fewer objects (--n-objects) or add "
                             f"candidates to bindlib.pretrained.{role.upper()}.")
    ids = [set(f.values()) for f in found.values()]
    if ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]:
        raise ValueError(f"{name} maps a colour, shape or item to the same token; the word lists must be disjoint.")
    return Words(*(list(found[r]) for r in ("colors", "shapes", "items")),
                 *(list(found[r].values()) for r in ("colors", "shapes", "items")))


# ============================================================== rendering with offsets
def render_text(words: Words, colors, shapes, items, line_of, query_slot) -> tuple[str, list]:
    """One prompt's text and the character span of each tracked word.

    colors/shapes/items: word indices per object in declaration order; line_of[k]: the association
    line of object k.  Spans: (role, object, start, end) with role in color, shape, assoc_shape,
    assoc_item, query_color (the last mention, in the answer stem).
    """
    parts, spans, pos = [], [], 0

    def add(text, marks=()):
        nonlocal pos
        if parts:
            pos += 1  # the joining space
        for role, obj, word in marks:  # each word occurs once in ``text``: templates put it in order
            start = pos + text.index(" " + word + ("." if role in ("shape", "assoc_item") else " ")) + 1
            spans.append((role, obj, start, start + len(word)))
        parts.append(text)
        pos += len(text)

    n = len(colors)
    add(INTRO)
    for k in range(n):
        c, s = words.colors[colors[k]], words.shapes[shapes[k]]
        add(DECLARATION.format(color=c, article="an" if s[0] in "aeiou" else "a", shape=s), [("color", k, c), ("shape", k, s)])
    by_line = sorted(range(n), key=lambda k: line_of[k])
    for k in by_line:
        s, i = words.shapes[shapes[k]], words.items[items[k]]
        add(ASSOCIATION.format(shape=s, item=i), [("assoc_shape", k, s), ("assoc_item", k, i)])
    c = words.colors[colors[query_slot]]
    text = QUESTION.format(color=c)
    start = pos + 1 + text.rindex(" " + c + " ") + 1
    add(text)
    spans.append(("query_color", int(query_slot), start, start + len(c)))
    return " ".join(parts), spans


def token_index(offsets, start: int, end: int) -> int:
    """The one token whose character range holds [start, end); fails if the word spans several tokens."""
    hits = [t for t, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if len(hits) != 1 or not (offsets[hits[0]][0] <= start and offsets[hits[0]][1] >= end):
        raise ValueError(f"characters {start}..{end} are not exactly one token (tokens {hits}); the word is not a "
                         "single token in context: check the tokenizer with bindlib.pretrained.vocabulary.")
    return hits[0]


@dataclass
class Prompts:
    """A batch of rendered prompts with the same number of objects (hence, here, the same token length).

    Object-indexed fields are [B, N] in declaration order, like ``bindlib.core.task.Batch``: ``colors``,
    ``shapes``, ``items`` are token ids, ``*_pos`` token positions; ``query_pos`` is the last token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    colors: torch.Tensor
    shapes: torch.Tensor
    items: torch.Tensor
    color_pos: torch.Tensor
    shape_pos: torch.Tensor
    assoc_shape_pos: torch.Tensor
    assoc_item_pos: torch.Tensor
    query_pos: torch.Tensor
    query_slot: torch.Tensor
    target: torch.Tensor
    objects: torch.Tensor  # [B, 3, N] word indices (colour, shape, item) and line_of in ``lines``
    lines: torch.Tensor
    texts: list[str]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def n_objects(self) -> int:
        return self.colors.shape[1]

    def select(self, idx) -> "Prompts":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Prompts(**{k: (v[idx] if torch.is_tensor(v) else [v[i] for i in idx.tolist()])
                          for k, v in self.__dict__.items()})

    def model_inputs(self, position_ids: torch.Tensor | None = None) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids if position_ids is None else position_ids}


def render(tokenizer, words: Words, colors, shapes, items, line_of, query_slot) -> Prompts:
    """Tokenize prompts given by word indices ([B, N] tensors, ``query_slot`` [B]) and locate every word."""
    B, n = colors.shape
    texts, rows = [], []
    for b in range(B):
        text, spans = render_text(words, colors[b].tolist(), shapes[b].tolist(), items[b].tolist(),
                                  line_of[b].tolist(), int(query_slot[b]))
        enc = tokenizer(text, return_offsets_mapping=True)
        pos = {}
        for role, obj, start, end in spans:
            pos[role, obj] = token_index(enc["offset_mapping"], start, end)
        texts.append(text)
        rows.append((enc["input_ids"], pos))
    lengths = {len(ids) for ids, _ in rows}
    if len(lengths) != 1:
        raise ValueError(f"prompts with {n} objects tokenized to different lengths {sorted(lengths)}; every word must "
                         "be a single token (see bindlib.pretrained.vocabulary).")
    L = lengths.pop()
    ids = torch.tensor([r[0] for r in rows])

    def positions(role):
        return torch.tensor([[p[role, k] for k in range(n)] for _, p in rows])

    color_pos = positions("color")
    query_pos = torch.full((B,), L - 1)
    qcol = torch.tensor([p["query_color", int(query_slot[b])] for b, (_, p) in enumerate(rows)])
    if not bool((ids[torch.arange(B), qcol] == ids[torch.arange(B), color_pos[torch.arange(B), query_slot]]).all()):
        raise ValueError("the query colour's token differs from its declaration token; the tokenizer is context-"
                         "dependent for these words.")
    cid, sid, iid = (torch.tensor(x) for x in (words.color_ids, words.shape_ids, words.item_ids))
    r = torch.arange(B)
    p = Prompts(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(L).expand(B, L).clone(),
                colors=cid[colors], shapes=sid[shapes], items=iid[items], color_pos=color_pos,
                shape_pos=positions("shape"), assoc_shape_pos=positions("assoc_shape"),
                assoc_item_pos=positions("assoc_item"), query_pos=query_pos, query_slot=query_slot.clone(),
                target=iid[items][r, query_slot], objects=torch.stack([colors, shapes, items], 1),
                lines=line_of.clone(), texts=texts)
    for name, pos_name in (("colors", "color_pos"), ("shapes", "shape_pos"), ("shapes", "assoc_shape_pos"),
                           ("items", "assoc_item_pos")):
        if not bool((ids.gather(1, getattr(p, pos_name)) == getattr(p, name)).all()):
            raise ValueError(f"token bookkeeping failed: the tokens at {pos_name} are not the {name}' ids.")
    return p


def sample_prompts(tokenizer, words: Words, n_prompts: int, n_objects: int, g: torch.Generator) -> Prompts:
    """Random prompts: N distinct colours, shapes and items, shuffled association lines, a random query."""
    if not MIN_OBJECTS <= n_objects <= min(MAX_OBJECTS, words.size):
        raise ValueError(f"n_objects={n_objects} is outside {MIN_OBJECTS}..{min(MAX_OBJECTS, words.size)} (the "
                         "chapter's range, capped by this tokenizer's single-token words).")

    def draw(pool):
        return torch.stack([torch.randperm(pool, generator=g)[:n_objects] for _ in range(n_prompts)])

    colors, shapes, items = draw(len(words.colors)), draw(len(words.shapes)), draw(len(words.items))
    line_of = torch.stack([torch.randperm(n_objects, generator=g) for _ in range(n_prompts)])
    query = torch.randint(n_objects, (n_prompts,), generator=g)
    return render(tokenizer, words, colors, shapes, items, line_of, query)


# ============================================================== counterfactual pairs
@dataclass
class PromptPairs:
    """Base and source prompts of the same length; targets are item token ids of the base context.

    kind "interchange": positional, symbolic, reflexive and base_answer, as in ``bindlib.interp.Pairs``.
    kind "rebind": ``symbolic`` is the base's item bound to the source's re-paired shape of the queried
    colour (the last token carries the bound shape), ``base_answer`` the unchanged answer (it carries the
    colour or its slot), ``reflexive`` the source's own answer; ``positional`` equals ``base_answer``.
    """

    kind: str
    base: Prompts
    source: Prompts
    positional: torch.Tensor
    symbolic: torch.Tensor
    reflexive: torch.Tensor
    base_answer: torch.Tensor

    def __len__(self) -> int:
        return len(self.base)

    def select(self, idx) -> "PromptPairs":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return PromptPairs(self.kind, self.base.select(idx), self.source.select(idx),
                           *(getattr(self, k)[idx] for k in ("positional", "symbolic", "reflexive", "base_answer")))


def _swap_items(items, r, a, b):
    out = items.clone()
    out[r, a], out[r, b] = items[r, b], items[r, a]
    return out


def interchange_pairs(tokenizer, words: Words, n_pairs: int, n_objects: int, seed: int = 0) -> PromptPairs:
    """Deranged counterfactual pairs (the design of ``bindlib.interp.make_pairs``).

    The source declares the base's objects in a deranged order (source slot j shows base object
    src[j] != j), keeps the slot -> association-line map, asks slot q_s showing object o (q_s, o != q_b),
    and trades the items of o and a third object x.  POS predicts i_{q_s}, SYM i_o, REF i_x, none i_{q_b}.
    """
    g = torch.Generator().manual_seed(int(seed))
    base = sample_prompts(tokenizer, words, n_pairs, n_objects, g)
    n, r = n_objects, torch.arange(n_pairs)
    slot = torch.arange(n).expand(n_pairs, n)
    nn_ = torch.full((n_pairs,), n)
    src = _random_derangements(nn_, n, g)
    q_b = base.query_slot[:, None]
    q_s = _random_choice((slot != q_b) & (src != q_b), g)
    o = src[r, q_s]
    x = _random_choice((slot != q_b) & (slot != q_s[:, None]) & (slot != o[:, None]), g)
    col, shp, itm = base.objects.unbind(1)
    itm_src = _swap_items(itm, r, o, x)
    source = render(tokenizer, words, col.gather(1, src), shp.gather(1, src), itm_src.gather(1, src), base.lines, q_s)
    return PromptPairs("interchange", base, source, positional=base.items[r, q_s], symbolic=base.items[r, o],
                       reflexive=base.items[r, x], base_answer=base.target.clone())


def rebind_pairs(tokenizer, words: Words, n_pairs: int, n_objects: int, seed: int = 0) -> PromptPairs:
    """Every colour keeps its slot and the query stays; colours are re-paired with deranged shapes.

    Source slot k declares colour c_k with shape s_{p(k)} (p a derangement); association lines are the
    base's, except that the items of p(q) and a third object x are traded, so the source's answer is
    i_x.  A last token carrying the colour or its slot predicts the base answer i_q; one carrying the
    bound shape predicts i_{p(q)}; one carrying the answer predicts i_x.
    """
    g = torch.Generator().manual_seed(int(seed) + 7919)
    base = sample_prompts(tokenizer, words, n_pairs, n_objects, g)
    n, r = n_objects, torch.arange(n_pairs)
    slot = torch.arange(n).expand(n_pairs, n)
    perm = _random_derangements(torch.full((n_pairs,), n), n, g)
    q = base.query_slot
    bound = perm[r, q]
    x = _random_choice((slot != q[:, None]) & (slot != bound[:, None]), g)
    col, shp, itm = base.objects.unbind(1)
    itm_src = _swap_items(itm, r, bound, x)
    # the shape object k moves to slot perm^-1(k); its association line stays where it was
    source = render(tokenizer, words, col, shp.gather(1, perm), itm_src.gather(1, perm), base.lines.gather(1, perm), q)
    return PromptPairs("rebind", base, source, positional=base.target.clone(), symbolic=base.items[r, bound],
                       reflexive=base.items[r, x], base_answer=base.target.clone())


def swapped_position_ids(prompts: Prompts, i: int, j: int) -> torch.Tensor:
    """Position ids with objects i and j's declaration tokens (colour and shape) trading positions."""
    pid = prompts.position_ids.clone()
    r = torch.arange(len(prompts))
    for pos in (prompts.color_pos, prompts.shape_pos):
        pid[r, pos[:, i]], pid[r, pos[:, j]] = prompts.position_ids[r, pos[:, j]], prompts.position_ids[r, pos[:, i]]
    return pid


def requery(tokenizer, words: Words, prompts: Prompts, slot: int) -> Prompts:
    """The same prompts asking about object ``slot``."""
    col, shp, itm = prompts.objects.unbind(1)
    return render(tokenizer, words, col, shp, itm, prompts.lines, torch.full((len(prompts),), int(slot)))
