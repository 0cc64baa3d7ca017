import math

import pytest

from verl_ext.metrics.bleu import bleu, tokenize


def test_known_answers():
    assert bleu("The lungs are clear.", "the lungs are clear .") == pytest.approx(1.0)
    # 4 hypothesis tokens vs 5 reference tokens, all n-grams match: BP = exp(1 - 5/4)
    assert bleu("the lungs are clear", "the lungs are clear .") == pytest.approx(math.exp(-0.25))
    # p1 = 3/4, p2 = 1/3, c = r = 4: sqrt(3/4 * 1/3) = 0.5
    assert bleu("the lungs were clear", "the lungs are clear") == pytest.approx(0.5)
    assert bleu("", "the lungs are clear") == 0.0
    assert bleu("effusion", "the lungs are clear") == 0.0
    assert tokenize("No  effusion, 2.5 cm.") == ["no", "effusion", ",", "2", ".", "5", "cm", "."]


def test_agrees_with_nltk():
    from nltk.translate.bleu_score import sentence_bleu

    pairs = [
        ("small left pleural effusion . heart size normal .", "heart size is normal . small left effusion ."),
        ("no acute cardiopulmonary process", "no acute cardiopulmonary process . stable"),
        (
            "the heart is mildly enlarged with small bilateral effusions",
            "mild cardiomegaly and small bilateral effusions",
        ),
    ]
    for h, r in pairs:
        assert bleu(h, r) == pytest.approx(sentence_bleu([tokenize(r)], tokenize(h), weights=(0.5, 0.5)))
