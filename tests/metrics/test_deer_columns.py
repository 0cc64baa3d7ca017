"""DEER's evaluation columns: known answers for PromptMRG's example-based CE metrics and the macro variant."""
import numpy as np
import pytest

from verl_ext.metrics.deer import ce_scores, deer_columns, nlg_scores


def _promptmrg_example_based(h, r):
    """PromptMRG's formulas, written out (tp/fp/fn per example, nan -> 0, mean over examples)."""
    h, r = h.astype(bool), r.astype(bool)
    tp, fp, fn = (h & r).sum(1), (h & ~r).sum(1), (~h & r).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.nan_to_num(tp / (tp + fp)).mean(), np.nan_to_num(tp / (tp + fn)).mean(),
                np.nan_to_num(tp / (tp + 0.5 * (fp + fn))).mean())


def test_example_based_known_answer():
    h = np.zeros((3, 14), dtype=int)
    r = np.zeros((3, 14), dtype=int)
    h[0, [1, 9]] = 1; r[0, [1]] = 1          # P 1/2, R 1, F1 2/3
    h[1, [4]] = 1; r[1, [4, 7]] = 1          # P 1, R 1/2, F1 2/3
    # row 2: nothing predicted, nothing in the reference -> 0, 0, 0 (PromptMRG's nan_to_num)
    got = ce_scores(h, r, "example")
    assert got["ce_precision"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert got["ce_recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert got["ce_f1"] == pytest.approx((2 / 3 + 2 / 3) / 3)
    rng = np.random.default_rng(0)
    h, r = rng.integers(0, 2, (50, 14)), rng.integers(0, 2, (50, 14))
    assert tuple(ce_scores(h, r, "example").values()) == pytest.approx(_promptmrg_example_based(h, r))
    with pytest.raises(ValueError, match="14"):  # verl_ext.metrics.clinical_efficacy checks the CheXbert layout
        ce_scores(h[:, :5], r[:, :5], "example")


def test_macro_known_answer():
    h = np.array([[1, 0], [1, 1], [0, 0]])
    r = np.array([[1, 0], [0, 1], [0, 1]])
    got = ce_scores(h, r, "macro")
    # class 0: P 1/2 R 1 F1 2/3; class 1: P 1 R 1/2 F1 2/3
    assert got == pytest.approx({"ce_precision": 0.75, "ce_recall": 0.75, "ce_f1": 2 / 3})


def test_nlg_scores_known_answers():
    """BLEU-4 and ROUGE-L by hand (nltk's corpus BLEU as a second oracle); METEOR as in test_meteor.py."""
    from nltk.translate.bleu_score import corpus_bleu

    hyp, ref = "The cat sat on the mat.", "the cat sat on a mat ."
    out = nlg_scores([hyp], [ref])
    # 7 tokens each (with "."): clipped n-gram precisions 6/7, 4/6, 2/5, 1/4; same length, so no brevity penalty
    assert out["bleu4"] == pytest.approx((6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25, rel=1e-6)
    assert out["bleu4"] == pytest.approx(corpus_bleu([[ref.split()]], [hyp.lower().replace(".", " .").split()]))
    # LCS "the cat sat on mat ." = 6 of 7: P = R = 6/7, and pycocoevalcap's ROUGE-L with beta 1.2 is then 6/7
    assert out["rouge_l"] == pytest.approx(6 / 7)
    # METEOR 1.5 (test_meteor.py): content words cat, sat, mat (weight 0.75), function words the, on, a, "." (0.25):
    # P = R = (3 * 0.75 + 3 * 0.25) / (3 * 0.75 + 4 * 0.25); 6 matches in 2 chunks
    assert out["meteor"] == pytest.approx((3 / 3.25) * (1 - 0.6 * (2 / 6) ** 0.2), abs=1e-6)


def test_identical_texts_score_one():
    refs = ["the heart is enlarged . small left pleural effusion .", "lungs are clear ."]
    cols = deer_columns(refs, refs, np.eye(2, 14, dtype=int), np.eye(2, 14, dtype=int))
    assert cols == pytest.approx({"ce_precision": 1.0, "ce_recall": 1.0, "ce_f1": 1.0, "bleu4": 1.0, "meteor": 1.0,
                                  "rouge_l": 1.0, "n": 2.0})
    with pytest.raises(ValueError, match="no words"):
        nlg_scores(["x"], ["  "])
    with pytest.raises(ValueError, match="no words"):
        nlg_scores(["x"], [" ... "])
    with pytest.raises(ValueError, match="no reports"):
        nlg_scores([], [])


def test_r2gen_cleaning_is_the_default_and_a_comma_no_longer_decides_bleu4(monkeypatch):
    """Issue 21: with punctuation marks as tokens one comma broke every 4-gram of this pair (BLEU-4 ~0); R2Gen's
    cleaning, which the RRG papers' BLEU/METEOR/ROUGE-L use, reads both as the same report (BLEU-4 1.0)."""
    import verl_ext.metrics.deer as deer

    seen = []  # METEOR's jar (20 s a start here) is tested above; record the text it would read instead
    monkeypatch.setattr(deer, "meteor_scores", lambda gts, res, timeout_s: seen.append((gts, res)) or (0.0, [0.0]))
    hyp, ref = "Heart size normal, lungs clear.", "heart size normal lungs clear."
    r2gen = nlg_scores([hyp], [ref])
    assert r2gen["bleu4"] == pytest.approx(1.0) and r2gen["rouge_l"] == pytest.approx(1.0)
    assert seen[0] == ({0: ["heart size normal lungs clear ."]}, {0: ["heart size normal lungs clear ."]})
    words = nlg_scores([hyp], [ref], tokenization="words")
    assert words["bleu4"] < 1e-4 and words["rouge_l"] < 1.0
    with pytest.raises(ValueError, match="tokenization"):
        nlg_scores([hyp], [ref], tokenization="nltk")


def test_r2gen_clean_known_answers():
    from verl_ext.metrics.r2gen_text import r2gen_clean

    assert r2gen_clean("FINDINGS:\n1. Heart size is NORMAL, lungs clear.  2. No effusion...") == \
        "findings heart size is normal lungs clear . no effusion ."
    # R2Gen's character class strips < = > @ (the range ":-[") but keeps hyphens, digits, # and $
    assert r2gen_clean("ET tube 4.5 cm; mild-to-moderate edema (stable) <= 5 mm @ #3 $x \"it's\" s/p") == \
        "et tube 45 cm mild-to-moderate edema stable  5 mm  #3 $x its sp ."
    assert r2gen_clean("a. . b") == "a .  . b ."  # R2Gen keeps the empty sentence

