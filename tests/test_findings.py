"""bindlib.book.findings: the verdicts the chapters print, on synthetic results and on the committed ones."""
import json
import re

import pytest

from bindlib.book import findings as F

VERDICTS = {"reproduced", "not reproduced", "partly", "mixed", "not measured", "not reproduced (both symbolic)",
            "not testable (every start already symbolic)"}


def write(tmp_path, name, record):
    (tmp_path / name).write_text(json.dumps(record))


def training(seed, id_acc, ood_acc):
    return {"kind": "training", "regime": "text_only", "profile": "cpu", "seed": seed,
            "id_accuracy": id_acc, "ood_accuracy": ood_acc}


@pytest.mark.parametrize("ood, verdict", [(0.40, "reproduced"), (0.30, "reproduced"), (0.55, "partly"),
                                          (0.95, "not reproduced")])
def test_cliff_verdict_follows_the_gap_to_the_paper(ood, verdict):
    runs = [training(s, 1.0, ood) for s in range(3)]
    c = F.cliff(runs)
    assert c["verdict"] == verdict
    assert c["ood"] == pytest.approx(ood) and c["paper_ood"] == pytest.approx(0.372)


def test_no_results_are_not_measured(tmp_path):
    assert F.cliff([])["verdict"] == "not measured"
    board = F.scoreboard(results_dir=tmp_path)
    assert set(board["verdict"]) == {"not measured"}


def test_a_positional_text_model_would_reproduce_the_cliff_claims(tmp_path):
    for s in range(2):
        write(tmp_path, f"training_text_only_cpu_s{s}.json", training(s, 0.99, 0.37))
        write(tmp_path, f"regime_image_text_project_cnn_cpu_s{s}.json",
              {"kind": "regime", "regime": "image_text", "profile": "cpu", "encoder": "project_cnn", "grounding": True,
               "seed": s, "id_accuracy": 0.99, "ood_accuracy": 0.70})
    board = F.scoreboard(results_dir=tmp_path).set_index("claim")["verdict"]
    assert board.iloc[0] == "reproduced" and board.iloc[1] == "reproduced"
    assert board.iloc[2] == "reproduced"  # image_text 70% > text only 37%
    assert board.iloc[3] == "not measured"  # no noise_text run


@pytest.mark.parametrize("bs, word", [(1.0, "symbolic"), (-0.9, "positional"), (0.1, "mixed"), (None, "not measured")])
def test_mechanism(bs, word):
    assert F.mechanism(bs) == word


def test_say_wraps_at_90_columns(capsys):
    F.say("word " * 100)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 1 and max(map(len, lines)) <= F.WIDTH


def test_committed_results_give_a_full_scoreboard():
    board = F.scoreboard()
    paper_rows = board[board["whose"] == "paper"]
    assert len(paper_rows) == 7
    assert all(v in VERDICTS or re.fullmatch(r"reproduced in \d+ of \d+ seeds", v) for v in paper_rows["verdict"])
    assert set(board[board["whose"] == "control"]["verdict"]) <= {"holds", "does not hold", "not measured"}
    assert list(board.columns) == ["claim", "whose", "our result", "verdict"]
    pretraining = F.encoder_pretraining_table()
    assert not pretraining.isna().any().any() and "target" in pretraining.index  # one target row, no NaN


def test_every_chapter_table_reads_the_committed_results():
    from bindlib.book import interp_findings as FI
    from bindlib.book import axes as A

    runs = F.text_only_runs()
    for frame in (F.training_table(runs), F.cliff_table(runs), F.axes_table(runs), F.slot_table(runs),
                  F.stage_starts(runs), F.learned_positions_table(), F.regime_table(), F.encoder_pretraining_table()):
        assert len(frame) > 0
    inter, knock = (A.records(kind) for kind in ("interchange", "knockout"))
    assert {r["regime"] for r in knock if r.get("image")} <= {"image_text", "noise_image_text"}
    for frame in (FI.models_table(), FI.outcome_table(inter), FI.routing_runs_table(inter),
                  FI.learned_positions_binding_table(), FI.critical_table(knock),
                  FI.head_table(knock), FI.control_signature_table()):
        assert len(frame) > 0
        cells = frame.reset_index().astype(str).to_numpy().ravel()
        assert "nan" not in cells and max(map(len, cells)) <= 300  # missing values print as a dash


def test_analysed_image_rows_read_pictures():
    from bindlib.book import axes as A

    models = A.models()
    image = models[(models["label"] == "image_text") & models["met targets"]]
    assert len(image) == 3 and (image["image ID"] >= 0.85).all()
    assert [r["seed"] for r in A.records("interchange", ["image_text"])] == [0, 1, 2]


def test_verdict_rules():
    from bindlib.book import axes as A

    assert A.beats(0.9, [0.5, 0.87]) and not A.beats(0.9, [0.5, 0.89]) and A.beats(0.5, [])
    assert A.verdict([True, True]) == "reproduced" and A.verdict([False]) == "not reproduced"
    assert A.verdict([True, False, False]) == "reproduced in 1 of 3 seeds" and A.verdict([]) == "not measured"


def test_noise_plus_images_is_best_only_above_every_row():
    board = F.scoreboard().set_index("claim")
    row = board.loc["Noise plus images is best (83.6%, summary)."]
    assert "noise_text" in row["our result"]  # judged against every other row, noise alone included


def test_signature_onset_needs_more_than_the_margin():
    from bindlib.book.interp_findings import signature_onset

    rows = [{"layer": 0, "accuracy": 0.7, "random_init_accuracy": 0.2},
            {"layer": 1, "accuracy": 0.9, "random_init_accuracy": 0.2}]
    assert signature_onset(rows, 0.5) == 1 and signature_onset(rows, 0.8) is None
    assert signature_onset([{"layer": 0, "accuracy": 1.0, "random_init_accuracy": None}]) is None


def test_book_tables_show_long_cells_whole_in_html():
    long = "a claim of more than fifty characters, which pandas would cut short with an ellipsis"
    t = F.table([{"claim": long, "verdict": "holds"}], index="verdict")
    assert long in t._repr_html_() and long in t.reset_index()._repr_html_()


def test_table_headers_break_after_underscores_and_cells_stay_whole():
    html = F.table([{"regime": "noise_half_replay", "text_OOD": "97.2%"}], index="regime")._repr_html_()
    assert "<th>noise_<wbr>half_<wbr>replay</th>" in html and "text_<wbr>OOD" in html
    assert F.breakable_headers('<td>a_b</td><th class="x">c_d</th>') == '<td>a_b</td><th class="x">c_d</th>'.replace(
        "c_d", "c_<wbr>d")


def test_a_table_without_an_index_shows_no_row_numbers():
    html = F.table([{"claim": "a", "verdict": "holds"}, {"claim": "b", "verdict": "holds"}])._repr_html_()
    assert "<th>claim</th>" in html and "<th>0</th>" not in html and "<th>1</th>" not in html
    assert "<th>0</th>" in F.table([{"claim": "a"}]).rename_axis("row")._repr_html_()  # a named index is shown
