"""Reading pretrained_*.json records back: one summary row per model, and the paper's reported numbers."""
from __future__ import annotations

from ..core import io
from .models import PAIRS


def load_records(results_dir=None) -> list[dict]:
    """Every data/results/pretrained_*.json record."""
    return io.load_results("pretrained_*.json", results_dir)


def summary_rows(records: list[dict]) -> list[dict]:
    """One row per measured model: routing site, P_sym, P_pos, BS, Sym/Pos, rebind share, swap flip, retrieval."""
    rows = []
    for rec in records:
        for role in ("llm", "vlm"):
            m = rec.get("models", {}).get(role)
            if not m:
                continue
            ic = m.get("interchange") or {}
            s = ic.get("summary") or {}
            site = s.get("routing_layer")
            at = next((d for d in ic.get("per_site", []) if d["site"] == site), {})
            rb = next((d for d in (m.get("rebind") or {}).get("per_site", []) if d["site"] == site), {})
            rows.append({"pair": rec["pair"], "model": m["hf_id"], "role": role, "routing_site": site,
                         "P_sym": at.get("symbolic"), "P_pos": at.get("positional"),
                         "BS": s.get("binding_score"), "Sym/Pos": s.get("sym_pos_ratio"),
                         "rebind_shape": rb.get("symbolic"), "swap_flip": m.get("position_swap", {}).get("flip_rate"),
                         "retrieval": _mean([r["accuracy"] for r in m.get("retrieval", [])]),
                         "pairs": ic.get("n_pairs"), "commit": rec.get("provenance", {}).get("git_commit")})
    return rows


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def reported_rows() -> list[dict]:
    """The paper's numbers (SPEC §1; from secondary summaries of the full paper), labelled as reported."""
    rows = []
    for key, spec in PAIRS.items():
        r = spec.reported
        if r.get("sym_pos_llm") is None:
            continue
        rows.append({"pair": key, "peak_layer": r["peak_layer"], "Sym/Pos LLM": r["sym_pos_llm"],
                     "Sym/Pos VLM": r["sym_pos_vlm"], "retrieval LLM": r.get("retrieval_llm"),
                     "retrieval VLM": r.get("retrieval_vlm"), "source": "reported (paper, via summaries)"})
    return rows


def markdown_table(rows: list[dict], digits: int = 3) -> str:
    if not rows:
        return ""
    cols = list(rows[0])

    def fmt(v):
        return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
