"""Bootstrap of corpus metrics: a hand-computed 4-study case, resample weights, CIs, the paired bootstrap."""
import time

import numpy as np
import pytest

from verl_ext.eval.bootstrap import (
    AVG,
    PAPER_METRICS,
    StudyScores,
    bootstrap,
    corpus_metrics,
    paired_bootstrap,
    resample_counts,
)
from verl_ext.metrics.chexbert import chexbert_scores


def _labels(*positives):
    v = np.zeros(14, dtype=int)
    v[list(positives)] = 1
    return v


# 1 Cardiomegaly, 2 Lung Opacity, 4 Edema, 7 Atelectasis, 9 Pleural Effusion, 13 No Finding
HYP = np.stack([_labels(1, 9), _labels(13), _labels(4, 7), _labels(13)])
REF = np.stack([_labels(1, 9), _labels(13), _labels(4, 9), _labels(2)])
VALUES = {"radgraph_f1": [0.2, 0.4, 0.6, 0.8], "ratescore": [0.5, 0.5, 0.7, 0.9], "green": [1.0, 0.0, 0.5, 0.5]}


def _four(ids=("A", "B", "C", "D"), hyp=HYP, ref=REF, values=VALUES):
    return StudyScores(ids=list(ids), values={k: np.array(v, dtype=float) for k, v in values.items()},
                       hyp_labels=hyp, ref_labels=ref)


def test_four_studies_by_hand():
    # TP/FP/FN per class: c1 1/0/0, c2 0/0/1, c4 1/0/0, c7 0/1/0, c9 1/0/1, c13 1/1/0, the 8 others empty (F1 0).
    # 14 classes: micro = 2*4 / (2*4 + 2 + 2); macro = (1 + 0 + 1 + 0 + 2/3 + 2/3 + 8*0) / 14.
    # 5 classes (1, 4, 5, 7, 9): micro = 2*3 / (2*3 + 1 + 1); macro = (1 + 1 + 0 + 0 + 2/3) / 5.
    expected = {
        "chexbert_micro_f1_14": 8 / 12,
        "chexbert_macro_f1_14": (10 / 3) / 14,
        "chexbert_micro_f1_5": 6 / 8,
        "chexbert_macro_f1_5": (8 / 3) / 5,
        "radgraph_f1": 0.5,
        "ratescore": 0.65,
        "green": 0.5,
    }
    expected[AVG] = sum(expected.values()) / 7
    got = {k: float(v[0]) for k, v in corpus_metrics(_four()).items()}
    assert list(got) == list(PAPER_METRICS) + [AVG]
    assert got == pytest.approx(expected, abs=1e-12)
    # Same numbers as the metrics package's corpus CheXbert F1s (sklearn classification_report conventions).
    assert {k: got[k] for k in chexbert_scores(HYP, REF)} == pytest.approx(chexbert_scores(HYP, REF), abs=1e-12)


def test_weights_equal_explicit_duplicates():
    w = np.array([[2.0, 0.0, 1.0, 1.0]])
    dup = _four(ids=("A1", "A2", "C", "D"), hyp=HYP[[0, 0, 2, 3]], ref=REF[[0, 0, 2, 3]],
                values={k: np.array(v)[[0, 0, 2, 3]] for k, v in VALUES.items()})
    weighted = corpus_metrics(_four(), w)
    explicit = corpus_metrics(dup)
    for name in explicit:
        assert weighted[name][0] == pytest.approx(explicit[name][0], abs=1e-12), name


def test_resample_counts_are_seeded_resamples():
    chunks = list(resample_counts(50, 600, seed=3, chunk=250))
    assert [c.shape for c in chunks] == [(250, 50), (250, 50), (100, 50)]
    w = np.concatenate(chunks)
    assert (w.sum(axis=1) == 50).all() and (w >= 0).all()
    assert np.array_equal(w, np.concatenate(list(resample_counts(50, 600, seed=3, chunk=250))))
    assert not np.array_equal(w, np.concatenate(list(resample_counts(50, 600, seed=4, chunk=250))))
    assert abs(w.mean() - 1.0) < 1e-12  # each study drawn once on average


def test_mean_metric_interval_matches_normal_theory():
    values = np.random.default_rng(0).normal(0.5, 0.2, 2000)
    scores = StudyScores(ids=[str(i) for i in range(2000)], values={"ratescore": values})
    est = bootstrap(scores, n_boot=2000, seed=1)["ratescore"]
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert est.value == pytest.approx(values.mean())
    assert est.se == pytest.approx(se, rel=0.1)
    assert est.high - est.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert est.low < est.value < est.high


def test_identical_runs_have_zero_difference():
    rng = np.random.default_rng(5)
    n = 300
    run = StudyScores(ids=[f"s{i}" for i in range(n)], values={"radgraph_f1": rng.random(n), "green": rng.random(n)},
                      hyp_labels=rng.integers(0, 2, (n, 14)), ref_labels=rng.integers(0, 2, (n, 14)))
    diffs = paired_bootstrap(run, run.subset(list(reversed(run.ids.tolist()))), n_boot=500, seed=0)
    for name, d in diffs.items():
        assert (d.delta, d.low, d.high, d.p_value, d.n) == (0.0, 0.0, 0.0, 1.0, n), name
        assert d.low <= 0 <= d.high


def test_paired_difference_of_a_shifted_run():
    base = _four()
    better = _four(values={**VALUES, "ratescore": [v + 0.1 for v in VALUES["ratescore"]]})
    diffs = paired_bootstrap(better, base, n_boot=300, seed=0)
    assert diffs["ratescore"].delta == pytest.approx(0.1)
    assert diffs["ratescore"].low == pytest.approx(0.1) and diffs["ratescore"].high == pytest.approx(0.1)
    assert diffs["ratescore"].p_value == 0.0
    assert diffs[AVG].delta == pytest.approx(0.1 / 7)
    assert diffs["chexbert_micro_f1_14"].delta == 0.0
    # Only common studies are paired.
    partial = better.subset(["A", "C", "D"])
    assert paired_bootstrap(partial, base, n_boot=50)["ratescore"].n == 3


def test_bootstrap_of_another_statistic_resamples_the_same_studies():
    """A caller's own columns (the ReXrank board's) get the same resamples as the corpus metrics they derive from."""
    scores = _four()

    def doubled(s, w):
        return {"twice_ratescore": 2 * corpus_metrics(s, w)["ratescore"]}

    plain = bootstrap(scores, n_boot=200, seed=3)["ratescore"]
    est = bootstrap(scores, n_boot=200, seed=3, statistic=doubled)
    assert list(est) == ["twice_ratescore"]
    e = est["twice_ratescore"]
    assert (e.value, e.low, e.high, e.se) == pytest.approx((2 * plain.value, 2 * plain.low, 2 * plain.high,
                                                            2 * plain.se))
    assert e.n == len(scores)
    better = _four(values={**VALUES, "ratescore": [v + 0.1 for v in VALUES["ratescore"]]})
    diff = paired_bootstrap(better, scores, n_boot=100, seed=0, statistic=doubled)["twice_ratescore"]
    assert diff.delta == pytest.approx(0.2) and diff.p_value == 0.0


def test_unscored_studies_are_left_out_of_means():
    """null/NaN = not scored (RaTE reference without entities, unparseable GREEN): means are over the rest, in the
    point estimate and in every resample — as verl_ext.metrics.aggregate.table_from_per_sample does."""
    from verl_ext.metrics.aggregate import table_from_per_sample

    ratescore = [0.5, None, 0.7, 0.9]
    scores = _four(values={**VALUES, "ratescore": ratescore})
    got = {k: float(v[0]) for k, v in corpus_metrics(scores).items()}
    assert got["ratescore"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    records = [{"id": i, "chexbert_generated": HYP[k].tolist(), "chexbert_reference": REF[k].tolist(),
                "radgraph_f1": VALUES["radgraph_f1"][k], "ratescore": ratescore[k], "green": VALUES["green"][k]}
               for k, i in enumerate("ABCD")]
    table = table_from_per_sample(records)
    assert got == pytest.approx({k: table[k] for k in got}, abs=1e-12)
    est = bootstrap(scores, n_boot=200, seed=0)
    assert est["ratescore"].n == 3 and est["radgraph_f1"].n == 4
    assert 0.5 <= est["ratescore"].low <= est["ratescore"].high <= 0.9
    # A resample that drew only the unscored study has no RaTE mean (NaN), and is skipped by the interval.
    only_b = corpus_metrics(scores, np.array([[0.0, 4.0, 0.0, 0.0]]))
    assert np.isnan(only_b["ratescore"][0]) and only_b["radgraph_f1"][0] == pytest.approx(0.4)


def test_invalid_inputs_are_named():
    with pytest.raises(ValueError, match="repeat"):
        StudyScores(ids=["a", "a"], values={"green": [0.1, 0.2]})
    with pytest.raises(ValueError, match="no study has a value"):
        StudyScores(ids=["a", "b"], values={"green": [None, float("nan")]})
    with pytest.raises(ValueError, match="infinite"):
        StudyScores(ids=["a"], values={"green": [float("inf")]})
    with pytest.raises(ValueError, match="binary"):
        StudyScores(ids=["a"], hyp_labels=np.full((1, 14), 3), ref_labels=np.zeros((1, 14)))
    with pytest.raises(ValueError, match="shape"):
        StudyScores(ids=["a"], hyp_labels=np.zeros((1, 13)), ref_labels=np.zeros((1, 13)))


def test_thousand_resamples_of_five_thousand_studies_are_fast():
    rng = np.random.default_rng(0)
    n = 5000
    scores = StudyScores(ids=[str(i) for i in range(n)],
                         values={m: rng.random(n) for m in ("radgraph_f1", "ratescore", "green")},
                         hyp_labels=rng.integers(0, 2, (n, 14)), ref_labels=rng.integers(0, 2, (n, 14)))
    started = time.perf_counter()
    result = bootstrap(scores, n_boot=1000, seed=0)
    paired_bootstrap(scores, scores, n_boot=1000, seed=0)
    assert time.perf_counter() - started < 10  # ~1 s on 2 cores
    assert len(result) == 8
