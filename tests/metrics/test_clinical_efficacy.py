"""Example-based CheXpert-label P/R/F1 (the MambaXray-VL / OraPO CE columns): known answers, sklearn as the oracle,
and the evaluation tables' --ce-metrics columns."""
import json

import numpy as np
import pytest

from verl_ext.metrics.chexbert import CONDITIONS
from verl_ext.metrics.clinical_efficacy import clinical_efficacy, example_based_prf


def _row(*idx):
    v = np.zeros(len(CONDITIONS), dtype=int)
    v[list(idx)] = 1
    return v


def test_known_answer():
    hyp = np.array([_row(1, 2), _row(), _row(3)])
    ref = np.array([_row(1, 4), _row(5), _row(3)])
    per = example_based_prf(hyp, ref)
    np.testing.assert_allclose(per["chexbert_ce_precision"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(per["chexbert_ce_recall"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(per["chexbert_ce_f1"], [0.5, 0.0, 1.0])
    ce = clinical_efficacy(hyp, ref)
    assert ce["chexbert_ce_f1"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        example_based_prf(hyp[:, :5], ref[:, :5])


def test_matches_sklearn_samples_average():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    ref = (rng.random((200, 14)) < 0.25).astype(int)
    hyp = np.where(rng.random((200, 14)) < 0.7, ref, 1 - ref)
    p, r, f, _ = precision_recall_fscore_support(ref, hyp, average="samples", zero_division=0)
    ce = clinical_efficacy(hyp, ref)
    assert ce["chexbert_ce_precision"] == pytest.approx(p)
    assert ce["chexbert_ce_recall"] == pytest.approx(r)
    assert ce["chexbert_ce_f1"] == pytest.approx(f)
    # the per-study mean F1 is not the harmonic mean of the mean P and R (as in OraPO's reported numbers)
    assert ce["chexbert_ce_f1"] != pytest.approx(2 * p * r / (p + r))


def test_compare_tables_with_ce_columns(tmp_path):
    from verl_ext.eval.compare import main

    rng = np.random.default_rng(1)
    rows = []
    for i in range(30):
        ref = (rng.random(14) < 0.3).astype(int)
        hyp = np.where(rng.random(14) < 0.7, ref, 1 - ref)
        rows.append({"id": f"s{i}", "data_source": "chexpert_plus", "radgraph_f1": float(rng.random()),
                     "chexbert_hyp": hyp.tolist(), "chexbert_ref": ref.tolist()})
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--run", f"OraPO={path}", "--out", str(tmp_path / "with"), "--n-boot", "50", "--ce-metrics"]) == 0
    assert main(["--run", f"OraPO={path}", "--out", str(tmp_path / "without"), "--n-boot", "50"]) == 0
    with_ce = (tmp_path / "with" / "tables.md").read_text()
    assert "CE-F1" in with_ce and "CE-P" in with_ce and "CE-F1" not in (tmp_path / "without" / "tables.md").read_text()
    hyp = np.array([r["chexbert_hyp"] for r in rows])
    ref = np.array([r["chexbert_ref"] for r in rows])
    summary = (tmp_path / "with" / "summary.csv").read_text()
    assert f"{clinical_efficacy(hyp, ref)['chexbert_ce_f1']:.4f}"[:5] in summary
