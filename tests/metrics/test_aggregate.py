import pytest

from verl_ext.metrics.aggregate import TABLE_COLUMNS, format_table, table_from_per_sample


def rec(gen, ref, rg, rate, green):
    return {"chexbert_generated": gen, "chexbert_reference": ref, "radgraph_f1": rg, "ratescore": rate, "green": green}


def v(*pos):
    out = [0] * 14
    for p in pos:
        out[p] = 1
    return out


def test_table_from_per_sample():
    records = [
        rec(v(1, 4), v(1, 9), 0.2, 0.5, None),
        rec(v(13), v(13), 0.4, None, None),  # RaTE not scorable here
        rec(v(), v(7), 0.0, 0.7, None),
    ]
    t = table_from_per_sample(records)
    assert t["chexbert_micro_f1_14"] == pytest.approx(4 / 7)
    assert t["chexbert_macro_f1_5"] == pytest.approx(0.2)
    assert t["radgraph_f1"] == pytest.approx(0.2)
    assert t["ratescore"] == pytest.approx(0.6) and t["counts"]["ratescore"] == 2
    assert t["green"] is None and "green" not in t["avg_columns"]
    present = [t[c] for c in TABLE_COLUMNS if c != "green"]
    assert t["avg"] == pytest.approx(sum(present) / 6) and t["n"] == 3
    lines = format_table(t).splitlines()
    assert lines[0].split()[:2] == ["Micro-F1-14", "Macro-F1-14"] and "-" in lines[1].split()


def test_paper_average_over_seven_columns():
    # MAIRA-2 row of Table 1: Avg. is the mean of the seven columns
    row = [0.5154, 0.3557, 0.5531, 0.4695, 0.2104, 0.3042, 0.5042]
    assert sum(row) / 7 == pytest.approx(0.4161, abs=5e-5)
