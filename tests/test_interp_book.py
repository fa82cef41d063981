"""The book side of chapters 5-7: charts and explorers are built from results records (synthetic ones here,
shaped like the command's output)."""
from __future__ import annotations

import pytest

from bindlib.book import interp_plots as P
from bindlib.book import widgets as W
from bindlib.interp.results import routing_table

pytest.importorskip("nnsight")


# ---------------------------------------------------------------- results records -> rows, charts, explorers
def interchange_rec(regime, seed, sym, pos):
    per_layer = [{"layer": l, "positional": pos, "symbolic": sym, "reflexive": 0.0, "none": 0.0,
                  "other": round(1 - sym - pos, 4), "binding_score": (sym - pos) / (sym + pos), "logit_diff": 0.5}
                 for l in range(3)]
    split = {"n_pairs": 10, "n_range": [4, 8], "per_layer": per_layer,
             "summary": {"routing_layer": 2, "binding_score": (sym - pos) / (sym + pos), "routing_share": sym + pos}}
    return {"kind": "interchange", "regime": regime, "seed": seed, "splits": {"id": split, "ood": split},
            "position_swap": {"flip_rate": pos, "stay_rate": sym}}


def test_routing_table_keeps_routing_seeds_and_names_the_rest():
    recs = [interchange_rec("text_only", s, 0.2, 0.8) for s in (0, 1)] + [interchange_rec("image_text", 0, 0.9, 0.1)]
    table = routing_table(recs)
    assert [r["regime"] for r in table] == ["text_only", "image_text"]
    assert table[0]["binding_score"] == pytest.approx(-0.6) and table[0]["seeds"] == [0, 1]
    assert table[1]["binding_score"] > 0
    assert routing_table([]) == []  # no results: no rows, and no crash
    # a seed whose patches barely route (P_sym + P_pos small) is left out of the regime's BS
    table = routing_table([interchange_rec("image_text", 0, 0.9, 0.05), interchange_rec("image_text", 1, 0.02, 0.1)])
    assert table[0]["seeds"] == [0] and table[0]["unmeasurable"] == [1]
    [row] = routing_table([interchange_rec("image_text", 1, 0.02, 0.1)])
    assert row["seeds"] == [] and row["unmeasurable"] == [1] and row["binding_score"] is None


def test_interchange_charts_are_small_and_aggregate_seeds():
    recs = [interchange_rec("text_only", s, 0.5 + 0.1 * s, 0.1) for s in range(3)]
    rows = P.iia_rows(recs)
    assert len(rows) == 3 * len(P.HYPOTHESES)  # one row per layer and outcome: seeds are averaged
    sym = next(r for r in rows if r["outcome"] == "symbolic" and r["layer"] == 0)
    assert sym["share"] == pytest.approx(0.6) and sym["seeds"] == 3
    bs = P.binding_score_rows(recs)
    assert all(r["lo"] <= r["binding_score"] <= r["hi"] for r in bs)
    for chart in (P.iia_heatmap_chart(recs), P.binding_score_chart(recs), P.routing_chart(recs)):
        chart.to_dict()
    w = W.interchange_explorer(recs)
    assert "routing layer 2" in w.children[1].value


def test_knockout_and_probe_charts():
    sets = {n: {"accuracy": [1.0, 0.5], "relative_change": [0.0, -50.0], "mean_size": 1.0}
            for n in ("answer_item", "random_answer_item", "structural", "random_structural")}
    recs = [{"regime": "noise_text", "seed": s, "layers": [0, 1], "window": {"sets": sets}, "cumulative": {"sets": sets}}
            for s in (0, 1)]
    assert P.knockout_order(recs) == ["answer_item", "random_answer_item", "structural", "random_structural"]
    assert len(P.knockout_rows(recs)) == 4 * 2
    P.knockout_heatmap_chart(recs).to_dict()
    P.knockout_heatmap_chart(recs, "cumulative", "accuracy").to_dict()
    assert "random_structural" in W.knockout_explorer(recs).children[1].value

    layers = [{"layer": l, "accuracy": 0.9, "control_accuracy": 0.95, "selectivity": -0.05, "random_init_accuracy": 0.2,
               "C": 1.0} for l in range(2)]
    probes = [{"role": "shape", "target": "bound_color", "n_classes": 16, "n_train": 5, "n_test": 5, "chance": 0.1,
               "layers": layers}]
    precs = [{"regime": "image_text", "seed": 0, "probes": probes}]
    assert {r["series"] for r in P.probe_rows(precs, "shape", "bound_color")} == set(P.PROBE_SERIES.values())
    assert P.signature_rows(precs)[0]["gain"] == pytest.approx(0.7)
    P.probe_chart(precs, "shape", "bound_color").to_dict()
    P.signature_chart(precs).to_dict()
    assert "16 classes" in W.probe_explorer(precs).children[1].value


def test_encoder_runs_and_image_knockouts_select_the_right_files(tmp_path):
    import json

    from bindlib.interp.results import encoder_runs, image_knockouts, load_interp

    def write(kind, regime, encoder, seed, variant=None, acc=0.9, image=False):
        rec = {"kind": kind, "regime": regime, "encoder": encoder, "seed": seed, "profile": "cpu", "variant": variant,
               "base_accuracy": acc}
        if image:
            rec["image"] = {"base_accuracy": 0.3, "chance": 0.25, "layers": [0], "window": {"sets": {}}}
        name = f"{kind}_{regime}_{encoder or ''}_s{seed}{variant or ''}.json"
        (tmp_path / name).write_text(json.dumps(rec))

    write("knockout", "text_only", None, 0)
    write("knockout", "image_text", "project_cnn", 0, image=True)
    write("knockout", "image_text", "project_cnn", 0, variant="_steps3x", image=True)
    write("knockout", "image_text", "pixels", 1, acc=0.95, image=True)
    write("knockout", "image_text", "pixels", 2, acc=0.2, image=True)  # near chance: left out of encoder_runs
    main = load_interp("knockout", results_dir=tmp_path)
    assert [(r["regime"], r["encoder"]) for r in main] == [("text_only", None), ("image_text", "project_cnn")]
    assert [(r["encoder"], r["seed"]) for r in encoder_runs("knockout", results_dir=tmp_path)] == [("pixels", 1)]
    runs = [r["run"] for r in image_knockouts(results_dir=tmp_path)]
    assert runs == ["image_text project_cnn s0", "image_text project_cnn s0_steps3x", "image_text pixels s1",
                    "image_text pixels s2"]
