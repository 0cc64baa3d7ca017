"""Known-answer tests of the CheXbert F1 formulas (hand-computed label vectors)."""

import numpy as np
import pytest

from verl_ext.metrics.chexbert import (
    CONDITIONS,
    CONDITIONS_5,
    INDEX_5,
    binarize,
    chexbert_scores,
    class_frequencies,
    corpus_f1,
    inverse_frequency_reward,
    sample_micro_f1,
    sample_micro_f1_batch,
)


def vec(*positives):
    v = [0] * 14
    for i in positives:
        v[i] = 1
    return v


# A: ref {Cardiomegaly, Pleural Effusion}, hyp {Cardiomegaly, Edema}
# B: both {No Finding}
# C: ref {Atelectasis}, hyp {}
HYP = [vec(1, 4), vec(13), vec()]
REF = [vec(1, 9), vec(13), vec(7)]


def test_label_sets():
    assert len(CONDITIONS) == 14 and CONDITIONS[13] == "No Finding"
    assert INDEX_5 == (1, 4, 5, 7, 9)
    assert sorted(CONDITIONS[i] for i in INDEX_5) == sorted(CONDITIONS_5)
    assert sorted(CONDITIONS_5) == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


def test_binarize_rrg_mapping():
    raw = [0, 1, 2, 3]  # blank, positive, negative, uncertain
    assert binarize(raw).tolist() == [0, 1, 0, 1]
    assert binarize(raw, uncertain="negative").tolist() == [0, 1, 0, 0]
    with pytest.raises(ValueError):
        binarize(raw, uncertain="maybe")


def test_sample_micro_f1_known_answers():
    assert sample_micro_f1(HYP[0], REF[0]) == pytest.approx(0.5)  # tp 1, fp 1, fn 1 -> 2/4
    assert sample_micro_f1(HYP[1], REF[1]) == 1.0
    assert sample_micro_f1(HYP[2], REF[2]) == 0.0
    assert sample_micro_f1(vec(), vec()) == 0.0  # 0/0 -> 0 (the authors' per-pair classification_report)
    assert sample_micro_f1_batch(HYP, REF).tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_corpus_f1_known_answers():
    all14 = corpus_f1(HYP, REF)
    assert all14["micro_f1"] == pytest.approx(4 / 7)  # tp 2, fp 1, fn 2
    assert all14["macro_f1"] == pytest.approx(2 / 14)  # Cardiomegaly 1, No Finding 1, every other class 0
    five = corpus_f1(HYP, REF, INDEX_5)
    assert five["micro_f1"] == pytest.approx(0.4)  # tp 1, fp 1 (Edema), fn 2 (Effusion, Atelectasis)
    assert five["macro_f1"] == pytest.approx(0.2)
    table = chexbert_scores(HYP, REF)
    assert table == pytest.approx(
        {
            "chexbert_micro_f1_14": 4 / 7,
            "chexbert_macro_f1_14": 1 / 7,
            "chexbert_micro_f1_5": 0.4,
            "chexbert_macro_f1_5": 0.2,
        }
    )


def test_corpus_f1_equals_sklearn_classification_report():
    from sklearn.metrics import classification_report

    rng = np.random.default_rng(0)
    hyp = (rng.random((200, 14)) < 0.2).astype(int)
    ref = (rng.random((200, 14)) < 0.2).astype(int)
    hyp[:, 3] = 0
    ref[:, 3] = 0  # a class with no support and no prediction (zero_division -> 0, still in the macro mean)
    for cols in (list(range(14)), list(INDEX_5)):
        cr = classification_report(ref[:, cols], hyp[:, cols], output_dict=True, zero_division=0)
        ours = corpus_f1(hyp, ref, cols)
        assert ours["micro_f1"] == pytest.approx(cr["micro avg"]["f1-score"])
        assert ours["macro_f1"] == pytest.approx(cr["macro avg"]["f1-score"])


def test_rejects_non_binary_and_shape_mismatch():
    with pytest.raises(ValueError, match="binary"):
        sample_micro_f1([0, 3], [0, 1])
    with pytest.raises(ValueError, match="shape"):
        corpus_f1([[0, 1]], [[0, 1, 0]])


def test_inverse_frequency_known_answers():
    freqs = {c: 0.1 for c in CONDITIONS}  # w_pos = 10/(10 + 1/0.9) = 0.9, w_neg = 0.1
    assert inverse_frequency_reward(vec(), vec(), freqs) == pytest.approx(0.05)  # 14 x 0.1/2, mean
    assert inverse_frequency_reward(vec(1), vec(1), freqs) == pytest.approx((0.45 + 13 * 0.05) / 14)
    assert inverse_frequency_reward(vec(1), vec(), freqs) == pytest.approx(13 * 0.05 / 14)  # false positive: 0
    edge = dict(freqs, Cardiomegaly=0.0)  # never positive in training: positive weight 0, negative weight 1
    assert inverse_frequency_reward(vec(), vec(), edge) == pytest.approx((0.5 + 13 * 0.05) / 14)
    with pytest.raises(ValueError, match="class_frequencies"):
        inverse_frequency_reward(vec(), vec(), {"Cardiomegaly": 0.1})


def test_class_frequencies():
    f = class_frequencies([vec(1), vec(1, 2), vec(), vec(13)])
    assert f["Cardiomegaly"] == 0.5 and f["Lung Opacity"] == 0.25 and f["No Finding"] == 0.25 and f["Edema"] == 0.0
