"""The per-axis verdicts (bindlib.book.axes): the lift rule and the paper's ordering, on made-up numbers."""
import pandas as pd

from bindlib.book import axes as A


def values(rows):
    return pd.DataFrame([{"regime": r, "seed": s, A.DISTANCE: v, A.COUNT: c, A.FILLER: v}
                         for r, s, v, c in rows])


def test_a_lift_needs_more_than_two_points_over_both_text_rows_in_that_seed():
    v = values([("text_only", 0, 0.60, 0.9), ("text_only_matched", 0, 0.50, 0.9), ("image_text", 0, 0.63, 0.9),
                ("text_only", 1, 0.50, 0.9), ("text_only_matched", 1, 0.61, 0.9), ("image_text", 1, 0.62, 0.9)])
    assert A.lifts(v, "image_text", A.DISTANCE) == [True, False]  # seed 1: +1 point over its best text row
    assert A.lifts(v, "image_text", A.COUNT) == [False, False]
    assert A.above_control(v, "image_text", A.DISTANCE) == [True, False]


def test_the_paper_ordering_is_read_on_seed_means():
    rows = [(r, s, base + 0.1 * k, 0.9) for k, r in enumerate(A.PAPER_ORDER) for s, base in ((0, 0.3), (1, 0.4))]
    rows += [("text_only_matched", s, 0.3, 0.9) for s in (0, 1)]
    v = values(rows)
    assert A.paper_order_holds(v, A.DISTANCE)
    v.loc[(v.regime == "noise_text"), A.DISTANCE] = 0.9  # noise above images breaks it
    assert not A.paper_order_holds(v, A.DISTANCE)
    table = A.verdicts(v)
    assert table.loc[A.DISTANCE, "noise_text lifts (seeds)"] == 2 and table.loc[A.DISTANCE, "noise_text seeds"] == 2


def test_a_seed_missing_from_a_regime_is_left_out_of_its_count():
    v = values([("text_only", 0, 0.60, 0.9), ("text_only_matched", 0, 0.50, 0.9), ("image_text", 0, 0.70, 0.9),
                ("text_only", 1, 0.50, 0.9), ("text_only_matched", 1, 0.61, 0.9)])
    assert A.lifts(v, "image_text", A.DISTANCE) == [True]


def test_glue_stores_numpy_scalars_as_python_numbers(monkeypatch):
    import numpy as np

    from bindlib.book import glue as G

    seen = {}
    monkeypatch.setattr(G, "_glue", lambda name, value, display=True: seen.update({name: value}))
    G.glue("x", np.float64(0.25), display=False)
    G.glue("n", np.int64(3), display=False)
    assert type(seen["x"]) is float and type(seen["n"]) is int


def test_the_page_tables_keep_the_numbers_of_the_verdicts():
    v = values([("text_only", 0, 0.60, 0.9), ("text_only_matched", 0, 0.50, 0.9), ("image_text", 0, 0.70, 0.8),
                ("noise_text", 0, 0.9, 0.9), ("noise_image_text", 0, 0.95, 0.9)])
    v["ID"] = 1.0
    m = A.means_table(v)
    assert m.loc["image_text", "distance"] == 0.70 and m.loc["image_text", "seeds"] == 1
    t = A.verdict_table(v)
    assert t.loc["image_text", "distance"] == "1 / 1 of 1" and t.loc["image_text", "count"] == "0 / 0 of 1"
    assert t.loc["paper's ordering holds", "distance"] == "no"
