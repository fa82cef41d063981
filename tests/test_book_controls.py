"""bindlib.book.control_data and bindlib.book.controls: the controls' tables and verdicts, on small
synthetic results files (tmp_path), so every verdict is checked both ways."""
import json

import pytest

from bindlib.book import control_data as D, controls as C, curves as K, findings as F, learning_data as L


def write(folder, name, record):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(record))


def interchange(seed, variant, layer, p_pos, p_sym, flip, fmt="standard", rebind=None, declared=None):
    per = [{"layer": l, "positional": 0.0, "symbolic": 1.0, "reflexive": 0.0} for l in range(4)]
    per[layer] = {"layer": layer, "positional": p_pos, "symbolic": p_sym, "reflexive": 0.0}
    bs = (p_sym - p_pos) / (p_sym + p_pos)
    summ = {"routing_layer": layer, "routing_share": p_pos + p_sym, "binding_score": bs,
            **({"rebind_shape": rebind, "rebind_stay": 1 - rebind} if rebind is not None else {})}
    rec = {"kind": "interchange", "regime": "text_only", "profile": "cpu", "seed": seed, "variant": variant,
           "format": fmt, "splits": {"id": {"per_layer": per, "summary": summ, "n_pairs": 100}},
           "position_swap": {"flip_rate": flip}}
    if declared is not None:
        rec["splits"]["id_declared"] = {"per_layer": per, "summary": {**summ, "binding_score": declared}}
        rec["position_swap_declared"] = {"flip_rate": flip / 2}
    return rec


def training(seed, id_acc, ood, hop_weight=1.0):
    return {"kind": "training_variant", "seed": seed, "id_accuracy": id_acc, "ood_accuracy": ood,
            "train_config": {"stages": [{"name": "s", "hop_weight": hop_weight}]}}


def ordered(tmp_path, seeds=(0, 2), p_pos=0.99, flip=0.98):
    for s in seeds:
        write(tmp_path, f"interchange_text_only_cpu_s{s}_ordered.json",
              interchange(s, "_ordered", 1, p_pos, 1 - p_pos, flip, fmt="ordered"))
        write(tmp_path, f"training_text_only_cpu_s{s}_ordered.json", training(s, 0.99, 0.08, 0.0))


def test_positive_control_reads_whatever_seeds_exist(tmp_path):
    ordered(tmp_path, seeds=(0, 2))
    pc = D.positional_control(tmp_path)
    assert pc["seeds"] == [0, 2] and pc["reads_positional"] is True
    assert pc["binding_score"] == pytest.approx(-0.98) and pc["rows"][0]["hop_weight"] == 0.0
    frame = C.positive_control_table(tmp_path)
    assert list(frame.index) == ["0", "2", "mean of 2"] and set(frame["reads"]) == {"positional"}


def test_a_symbolic_ordered_model_fails_the_positive_control(tmp_path):
    ordered(tmp_path, seeds=(0,), p_pos=0.1, flip=0.05)
    assert D.positional_control(tmp_path)["reads_positional"] is False


def test_nothing_measured_says_so(tmp_path):
    assert D.positional_control(tmp_path)["reads_positional"] is None
    assert D.neutral(tmp_path) == [] and len(C.lever_table(tmp_path)) == 0
    claims = D.control_claims(tmp_path)
    assert [v for _, _, v in claims] == ["not measured"] * 3
    assert len(C.rebind_table(tmp_path)) == 0 and len(C.learned_positions_controls_table(tmp_path)) == 0


def test_rebind_and_learned_positions_tables(tmp_path):
    ordered(tmp_path, seeds=(0,))
    for s in (0, 1):
        write(tmp_path / "controls", f"interchange_text_only_cpu_s{s}.json",
              interchange(s, None, 2, 0.0, 1.0, 0.02, rebind=1.0, declared=0.99))
        write(tmp_path, f"interchange_text_only_cpu_s{s}.json", interchange(s, None, 2, 0.0, 1.0, 0.02))
        write(tmp_path, f"training_text_only_cpu_s{s}.json", training(s, 0.99, 0.97))
    write(tmp_path, "interchange_text_only_cpu_s0_learnedpos.json", interchange(0, "_learnedpos", 2, 0.0, 1.0, 0.01))
    write(tmp_path, "training_text_only_cpu_s0_learnedpos.json", training(0, 0.99, 0.25))
    write(tmp_path, "position_shift_text_only_cpu_s0_learnedpos.json",
          {"kind": "position_shift", "shifts": {"0": {"id_accuracy": 0.99}, "8": {"id_accuracy": 0.7}}})
    rebind = C.rebind_table(tmp_path)
    assert list(rebind.index) == ["recipe s0", "recipe s1"]
    assert set(rebind["bound shape"]) == {"100.0%"} and set(rebind["decl. BS"]) == {"+0.99"}
    learned = C.learned_positions_controls_table(tmp_path)
    assert learned.loc[(0, "learned"), "shift +8"] == "70.0%" and learned.loc[(0, "RoPE"), "OOD"] == "97.0%"


def curve(steps, final, variant="direct", seed=0):
    hist = [{"step": s, "acc_two_hop": 0.25, "acc_color_to_shape": 0.0, "acc_shape_to_item": 0.1}
            for s in range(100, steps + 1, 100)]
    hist[-1]["acc_two_hop"] = final
    return {"kind": "learning_curve", "variant": variant, "seed": seed, "history": hist,
            "train_config": {"task": {}, "stages": [{"hop_weight": 0.0}]}, "provenance": {"wall_seconds": 7200}}


@pytest.mark.parametrize("final, holds", [(0.28, True), (0.9, False)])
def test_neutral_curve_verdict(tmp_path, final, holds):
    write(tmp_path, "curve_direct_long_s0.json", curve(4000, final))
    write(tmp_path, "curve_direct_short_s1.json", curve(1000, 0.25, seed=1))
    (c,) = [x for x in D.neutral_curves(tmp_path) if x["steps"] == 4000]
    assert c["chance"] == pytest.approx(D.chance()) and c["left_plateau"] is (not holds)
    claim = D.control_claims(tmp_path)[1]
    assert claim[2] == ("holds" if holds else "does not hold") and "4,000 steps, 1 seed" in claim[1]
    assert K.neutral_table(tmp_path).shape[1] == 2  # one column per curve


def test_an_unfinished_neutral_curve_is_on_record_but_not_counted_as_done(tmp_path):
    write(tmp_path, "curve_direct_40k_s0.json", curve(4000, 0.28))
    going = curve(1500, 0.26, seed=1)
    going["train_config"]["stages"] = [{"hop_weight": 0.0, "steps": 4000}]
    write(tmp_path, "progress_curve_direct_40k_s1.json",
          {**going, "kind": "training_progress", "of": "curve_direct_40k_s1", "step": 1500, "run_dir": "runs/x"})
    done = [c for c in D.neutral(tmp_path) if not c["unfinished"]]
    going = [c for c in D.neutral(tmp_path) if c["unfinished"]]
    assert [(c["steps"], c["left_plateau"]) for c in done] == [(4000, False)]
    assert [(c["seed"], c["steps"], c["budget"]) for c in going] == [(1, 1500, 4000)]
    assert K.neutral_table(tmp_path).loc["steps", "curve_direct_40k_s1"] == "1,500 of 4,000 (not finished)"
    [row] = [r for r in C.missing_table(tmp_path).itertuples() if "longest neutral curve" in r.Index]
    assert row[1] == "1 of 3 (4,000 steps); seed 1 at 1,500 of 4,000 (not finished)"


def test_curve_rows_are_windowed_means_and_the_chart_is_small(tmp_path):
    hist = [{"step": s, "acc_two_hop": s / 1000, "acc_color_to_shape": 0.0, "acc_shape_to_item": 0.0}
            for s in (100, 200, 1100)]
    rows = K.curve_rows(hist, window=1000)
    two_hop = [r for r in rows if r["skill"] == "two_hop"]
    assert two_hop == [{"skill": "two_hop", "step": 1000, "accuracy": 0.15},
                       {"skill": "two_hop", "step": 2000, "accuracy": 1.1}]
    write(tmp_path, "curve_direct_s0.json", curve(40_000, 0.28))
    spec = K.neutral_chart(tmp_path).to_dict()
    assert len(spec["layer"]) == 2 and len(spec["layer"][0]["data"]["values"]) == 3 * 40


def recipe_training(seed, reach_at, stop_at):
    hist = [{"step": s, "acc_two_hop": 0.995 if s >= reach_at else 0.5, "acc_color_to_shape": 0.8,
             "acc_shape_to_item": 1.0} for s in range(100, stop_at + 1, 100)]
    hist[-1]["stopped"] = "early_stop"
    return {"kind": "training", "seed": seed, "history": hist, "train_config": {"task": {}}}


def test_the_deeper_model_is_reported_beside_the_profile_model(tmp_path):
    """curve --n-layers 6: its own columns (layers 6) in the neutral table; a run stopped before its end
    (from its log) and a finished one are told apart."""
    assert D.neutral(tmp_path, deeper=True) == []
    write(tmp_path, "curve_direct_40k_s0.json", curve(4000, 0.28))
    l6 = {**curve(2500, 0.23), "train_config": {"task": {}, "model": {"n_layers": 6},
                                                "stages": [{"steps": 4000, "hop_weight": 0.0}]}}
    write(tmp_path, "progress_curve_direct_L6_40k_s0.json",
          {**l6, "kind": "training_progress", "of": "curve_direct_L6_40k_s0", "step": 2500, "run_dir": None})
    [stopped] = D.neutral(tmp_path, deeper=True)
    assert stopped["unfinished"] and stopped["lost"] and stopped["steps"] == 2500 and stopped["n_layers"] == 6
    write(tmp_path, "curve_direct_L6_40k_s1.json", {**l6, **curve(4000, 0.27, seed=1), "train_config": l6["train_config"]})
    done = [c for c in D.neutral(tmp_path, deeper=True) if not c["unfinished"]]
    assert [(c["seed"], c["steps"], c["final_two_hop"], c["left_plateau"]) for c in done] == [(1, 4000, 0.27, False)]
    frame = K.neutral_table(tmp_path)
    assert list(frame.loc["layers"]) == [4, 6, 6]
    assert frame.loc["steps", "curve_direct_L6_40k_s0"] == "2,500 of 4,000 (stopped; from its log)"
    write(tmp_path, "curve_direct_L6_40k_s1.json", {**curve(4000, 0.9, seed=1), "train_config": l6["train_config"]})
    assert [c["left_plateau"] for c in D.neutral(tmp_path, deeper=True) if not c["unfinished"]] == [True]
    assert len(D.neutral(tmp_path)) == 1  # the profile model's curves only


@pytest.mark.parametrize("nds_final, reaches", [(0.26, False), (0.995, True)])
def test_the_aid_ablation_compares_variants_at_one_budget(tmp_path, nds_final, reaches):
    for seed in (0, 1):
        write(tmp_path, f"training_text_only_cpu_s{seed}.json", recipe_training(seed, 2100, 3600))
        write(tmp_path, f"curve_no_deep_supervision_s{seed}.json", curve(5000, nds_final, "no_deep_supervision", seed))
    write(tmp_path, "training_text_only_cpu_s0_ordered.json", recipe_training(0, 100, 200))  # an arm: not the recipe
    write(tmp_path, "curve_direct_40k_s0.json", curve(40_000, 0.9))  # read at the budget: 25%, not its 90%
    # neither a deeper model nor a curriculum stretched to 40k steps is a row of the 5k ablation
    write(tmp_path, "curve_direct_L6_40k_s1.json", {**curve(40_000, 0.9, seed=1), "train_config": {
        "task": {}, "model": {"n_layers": 6}, "stages": [{"steps": 40_000, "hop_weight": 0.0}]}})
    write(tmp_path, "curve_no_deep_supervision_40k_s2.json", {**curve(40_000, 0.9, "no_deep_supervision", 2), "train_config": {
        "task": {}, "stages": [{"steps": 12_000}, {"steps": 4_000}, {"steps": 12_000}, {"steps": 12_000}]}})
    assert [c["name"] for c in D.neutral(tmp_path, deeper=True)] == ["curve_direct_L6_40k_s1"]
    assert [c["name"] for c in D.neutral(tmp_path)] == ["curve_direct_40k_s0"]
    rows = D.aid_ablation(tmp_path, budget=5000)
    assert [(r["variant"], r["seed"]) for r in rows] == [("recipe", 0), ("recipe", 1), ("no_deep_supervision", 0),
                                                         ("no_deep_supervision", 1), ("direct", 0)]
    recipe, direct = rows[0], rows[-1]
    assert recipe["steps_to_99"] == 2100 and recipe["stopped_early"] and recipe["steps"] == 3600
    assert direct["steps"] == 5000 and direct["two_hop"] == 0.25 and direct["steps_to_99"] is None
    nds = [r for r in rows if r["variant"] == "no_deep_supervision"]
    assert all((r["steps_to_99"] is not None) is reaches for r in nds)
    t = K.ablation_table(tmp_path, budget=5000)
    assert list(t.columns) == ["recipe", "no deep supervision", "direct"] and t.loc["reached 99%", "direct"] == "0 of 1"
    spec = K.ablation_chart(tmp_path, budget=5000).to_dict()
    assert len(spec["layer"][0]["data"]["values"]) == 2 * 36 + 2 * 50 + 50
    assert D.aid_ablation(tmp_path / "empty") == []


def lever(recipe, image, text, ood=0.9):
    return {"kind": "image_recipe", "recipe": recipe, "seed": 0, "encoder": "grid", "image_id_accuracy": image,
            "id_accuracy": text, "ood_accuracy": ood, "targets": {"image_id_accuracy": 0.85, "id_accuracy": 0.95},
            "train_config": {"stages": [{"name": "adapter_warmup", "steps": 300, "image": 1.0, "grounding": 1.0,
                                         "freeze": "lm"},
                                        {"name": "mix", "steps": 400, "image": 0.2}]}}


def test_lever_table_recomputes_the_targets(tmp_path):
    write(tmp_path, "imagestage_long.json", lever("long", 0.99, 0.24))
    write(tmp_path, "imagestage_replay.json", lever("replay", 0.35, 1.0))
    frame = C.lever_table(tmp_path)
    assert set(frame["meets both targets"]) == {"no"}
    assert "LM frozen" in frame.loc["long 300 s0", "what it does"]
    write(tmp_path, "imagestage_both.json", lever("both", 0.9, 0.97))
    assert sum(r["meets_targets"] for r in L.image_levers(tmp_path)) == 1
    assert "1 of 3 image-stage runs" in C.missing_table(tmp_path).iloc[1, 0]
    other = {**lever("replay", 0.25, 1.0), "init_from": "data/checkpoints/text_only_cpu_s0_learnedpos"}
    write(tmp_path, "imagestage_replay_from_lp.json", other)
    assert len(C.lever_table(tmp_path)) == 3  # the recipe's text models only
    assert list(C.lever_table(tmp_path, start="_learnedpos").index) == ["replay 300 s0"]
    short = lever("replay", 0.9, 0.97)
    short["train_config"]["vision"] = {"image_tokens": "objects"}
    write(tmp_path, "imagestage_replay_objtok.json", short)
    assert "replay 300 s0 (object tokens)" in C.lever_table(tmp_path).index


def test_ceiling_and_throughput_tables(tmp_path):
    write(tmp_path, "encoder_ceiling_cpu.json", {"kind": "encoder_ceiling", "encoders": {
        "grid": {"shape_object": 0.99, "found_queried_object": 1.0, "two_hop_ceiling": 0.98, "render": {"grid": 16}}}})
    write(tmp_path, "encoder_grid_cpu.json", {"kind": "encoder_pretraining", "held_out": {"shape_object": 0.97}})
    frame = C.ceiling_table(tmp_path)
    assert frame.loc["grid", "two-hop ceiling"] == "98.0%" and frame.loc["grid", "held-out shape (pretraining)"] == "97.0%"
    write(tmp_path, "throughput_image_stage_cpu.json", {
        "kind": "image_throughput", "encoder": "e", "batch_size": 32, "speedup": 3.2, "target_speedup": 3.0,
        "meets_target": True, "provenance": {"device": "cpu"},
        "rows": [{"variant": "old", "steps_per_second": 0.5, "speedup_vs_old": 1.0},
                 {"variant": "new: pool, bf16", "steps_per_second": 1.6, "speedup_vs_old": 3.2}]})
    assert list(C.throughput_table(tmp_path).index) == ["old", "new: pool, bf16"]
    assert C.throughput_table(tmp_path).loc["new: pool, bf16", "speed-up"] == "3.20x"


def test_scoreboard_has_the_control_rows(tmp_path):
    ordered(tmp_path, seeds=(0,))
    write(tmp_path, "curve_direct_s0.json", curve(2000, 0.26))
    write(tmp_path, "interchange_text_only_cpu_s0_steps8x_hopw0.json",
          interchange(0, "_steps8x_hopw0", 2, 0.0, 1.0, 0.02, rebind=1.0))
    write(tmp_path, "training_text_only_cpu_s0_steps8x_hopw0.json", training(0, 0.996, 0.95, 0.0))
    board = F.scoreboard(results_dir=tmp_path)
    controls = board[board["whose"] == "control"]
    assert len(controls) == 3 and set(controls["verdict"]) == {"holds"}
    assert (controls["verdict"] == "holds").sum() == 3
    missing = C.missing_table(tmp_path)
    assert "1 of 3" in missing.loc["3 seeds of the ordered-format positive control"].iloc[0]


def test_dial_table_groups_by_share_and_the_trend_names_each_reading(tmp_path):
    def dial(seed, p, shuffled_bs_pair, declared_bs, id_shuffled, id_declared):
        suffix = f"_hopslot_decl{round(100 * p):03d}" if p else "_hopslot"  # p = 0: the slot arm
        rec = interchange(seed, suffix, 2, *shuffled_bs_pair, 0.1, declared=declared_bs)
        write(tmp_path, f"interchange_text_only_cpu_s{seed}{suffix}.json", rec)
        write(tmp_path, f"training_text_only_cpu_s{seed}{suffix}.json",
              {**training(seed, id_shuffled, 0.1), "axes": {"declared": {"id_accuracy": id_declared}}})

    assert D.dial_rows(tmp_path) == []
    dial(0, 0.5, (0.0, 1.0), 0.9, 0.9, 1.0)
    dial(1, 0.5, (0.0, 1.0), 0.7, 0.8, 1.0)
    dial(0, 1.0, (1.0, 0.0), -1.0, 0.25, 0.99)
    dial(0, 0.0, (0.0, 1.0), 1.0, 0.99, 0.99)
    assert [(r["p"], r["seed"]) for r in D.dial_rows(tmp_path)] == [(0.0, 0), (0.5, 0), (0.5, 1), (1.0, 0)]
    t = C.dial_table(tmp_path)
    assert list(t.columns) == ["0.00", "0.50", "1.00"]  # one column per share: narrow
    assert t.loc["seeds", "0.50"] == "0, 1" and t.loc["ID shuffled", "0.50"] == "85.0%"
    assert t.loc["BS declared", "0.50"] == "+0.80" and t.loc["BS declared", "1.00"] == "-1.00"
    assert list(t.loc["ID shuffled"]) == ["99.0%", "85.0%", "25.0%"]
    dial(1, 1.0, (0.0, 1.0), 1.0, 0.99, 1.0)  # a second seed at p = 1 that reads symbolic: the share is split
    t = C.dial_table(tmp_path)
    assert list(t.columns) == ["0.00", "0.50", "1.00 (positional)", "1.00 (symbolic)"]
    assert t.loc["seeds", "1.00 (symbolic)"] == "1" and t.loc["BS declared", "1.00 (positional)"] == "-1.00"


def test_hop_layer_table_puts_the_moved_supervision_beside_the_recipe(tmp_path):
    write(tmp_path / "controls", "interchange_text_only_cpu_s0.json", interchange(0, "", 2, 0.0, 1.0, 0.01, rebind=1.0))
    write(tmp_path, "training_text_only_cpu_s0.json", training(0, 0.99, 0.97))
    write(tmp_path, "interchange_text_only_cpu_s0_hopl2.json", interchange(0, "_hopl2", 3, 0.0, 1.0, 0.02, rebind=0.9))
    write(tmp_path, "training_text_only_cpu_s0_hopl2.json", training(0, 0.98, 0.9))
    t = C.hop_layer_table(tmp_path)
    assert list(t.index) == ["recipe s0", "hopl2 s0"]
    assert list(t["routing layer"]) == [2, 3] and list(t["deep supervision reads"]) == ["block 1 output", "block 2 output"]
    assert t.loc["hopl2 s0", "rebind: bound shape"] == "90.0%" and t.loc["hopl2 s0", "OOD"] == "90.0%"


def test_missing_table_counts_the_dials_seeds_per_share(tmp_path):
    for seed, suffix in ((0, "_hopslot"), (1, "_hopslot"), (0, "_hopslot_decl100")):
        write(tmp_path, f"interchange_text_only_cpu_s{seed}{suffix}.json",
              interchange(seed, suffix, 2, 0.2, 0.05, 0.1, rebind=0.0, declared=1.0))
        write(tmp_path, f"training_text_only_cpu_s{seed}{suffix}.json", training(seed, 0.99, 0.9))
    status = C.missing_table(tmp_path).iloc[2, 0]
    assert status == "2 of 4 values measured; seeds per value: p = 0: 2, p = 1: 1"
    deeper = C.missing_table(tmp_path).loc["a deeper model (6-8 layers) without aids at the longest budget"].iloc[0]
    assert deeper == "none committed"
    l6 = {**curve(25_000, 0.26), "train_config": {"task": {}, "model": {"n_layers": 6},
                                                    "stages": [{"steps": 40_000, "hop_weight": 0.0}]}}
    write(tmp_path, "progress_curve_direct_L6_40k_s0.json",  # still training: its progress record
          {**l6, "kind": "training_progress", "of": "curve_direct_L6_40k_s0", "step": 25_000, "run_dir": "runs/x"})
    deeper = C.missing_table(tmp_path).loc["a deeper model (6-8 layers) without aids at the longest budget"].iloc[0]
    assert deeper == "6 layers, 25,000 of 40,000 steps (not finished): latest two-hop 26.0%"
    write(tmp_path, "progress_curve_direct_L6_40k_s0.json",  # from its log (progress --log): nothing to resume
          {**l6, "kind": "training_progress", "of": "curve_direct_L6_40k_s0", "step": 25_000, "run_dir": None})
    deeper = C.missing_table(tmp_path).loc["a deeper model (6-8 layers) without aids at the longest budget"].iloc[0]
    assert deeper == "6 layers, 25,000 of 40,000 steps (not finished): latest two-hop 26.0%"
    assert D.aid_ablation(tmp_path) == [] and D.neutral(tmp_path) == []  # nor a row anywhere else
    write(tmp_path, "curve_direct_L6_40k_s0.json", {**curve(40_000, 0.3), "train_config": l6["train_config"]})
    deeper = C.missing_table(tmp_path).loc["a deeper model (6-8 layers) without aids at the longest budget"].iloc[0]
    assert deeper == "6 layers, 40,000 steps: final two-hop 30.0%"  # finished: the progress record is set aside


def probe_record(seed, variant, accs, base=0.2):
    layers = [{"layer": l, "accuracy": a, "random_init_accuracy": base} for l, a in enumerate(accs)]
    return {"kind": "probe", "regime": "text_only", "seed": seed, "variant": variant,
            "probes": [{"role": "shape", "target": "bound_color", "layers": layers}]}


def test_control_signature_sets_the_probe_beside_the_interchange_reading(tmp_path):
    from bindlib.book import interp_findings as IF

    ordered(tmp_path, seeds=(0, 1))
    write(tmp_path, "interchange_text_only_cpu_s0.json", interchange(0, None, 2, 0.0, 1.0, 0.02))
    write(tmp_path, "probe_text_only_cpu_s0.json", probe_record(0, None, [0.0, 0.99, 1.0, 1.0]))
    write(tmp_path, "probe_text_only_cpu_s0_ordered.json", probe_record(0, "_ordered", [0.0, 0.6, 0.6, 0.6]))
    write(tmp_path, "probe_text_only_cpu_s1_ordered.json", probe_record(1, "_ordered", [0.0, 0.3, 0.9, 0.9]))
    frame = IF.control_signature_table(tmp_path).set_index("model")
    assert list(frame.index) == ["recipe s0", "ordered format s0", "ordered format s1"]
    assert list(frame["signature"]) == ["from layer 1", "absent", "from layer 2"]
    assert frame.loc["ordered format s0", "reads (ch. 5)"] == "positional" and frame.loc["recipe s0", "layer 1"] == "0.99 / 0.20"
    rows = IF.control_signature_rows(tmp_path)
    assert [(r["arm"], r["seed"], r["onset"]) for r in rows] == [("recipe", 0, 1), ("ordered format", 0, None),
                                                                 ("ordered format", 1, 2)]
    assert IF.control_signature_rows(tmp_path / "empty") == []
