"""Known-answer tests of DEER's DiTPO token weights (rule-based TF-IDF, Eq. 6-8; gradient-based Eq. 12 mapping)."""
import math

import pytest
import torch

from verl_ext.algorithms.ditpo import (
    align_max_by_char_spans,
    apply_token_weights,
    saliency_token_weights,
    tfidf_token_weights,
)

LN2 = math.log(2.0)


def test_tfidf_known_answer():
    # group "a": o1 = [1, 2, 2, 3], o2 = [1, 4] (+ 2 padding positions); group "b": a single response.
    responses = torch.tensor([[1, 2, 2, 3], [1, 4, 9, 9], [5, 5, 6, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    w = tfidf_token_weights(responses, mask, ["a", "a", "b"], alpha=4.0)
    expected = torch.tensor([
        # token 1 is in both responses: IDF = ln(2/2) = 0; token 2: TF 2/4, IDF ln 2; token 3: TF 1/4, IDF ln 2
        [1.0, 1 + 4 * 0.5 * LN2, 1 + 4 * 0.5 * LN2, 1 + 4 * 0.25 * LN2],
        # token 4: TF 1/2, IDF ln 2; padding keeps weight 1
        [1.0, 1 + 4 * 0.5 * LN2, 1.0, 1.0],
        # a group of one: every IDF is ln(1/1) = 0
        [1.0, 1.0, 1.0, 1.0],
    ])
    torch.testing.assert_close(w, expected)


def test_tfidf_groups_are_independent_and_alpha_zero_is_identity():
    responses = torch.tensor([[1, 2], [3, 4], [1, 2], [3, 4]])
    mask = torch.ones_like(responses)
    w = tfidf_token_weights(responses, mask, ["a", "a", "b", "b"], alpha=1.0)
    torch.testing.assert_close(w[:2], w[2:])
    assert torch.all(tfidf_token_weights(responses, mask, ["a", "a", "b", "b"], alpha=0.0) == 1.0)
    # one group of identical responses: nothing is distinctive
    assert torch.all(tfidf_token_weights(responses[:1].repeat(3, 1), mask[:3], ["g"] * 3) == 1.0)


def test_tfidf_input_checks():
    with pytest.raises(ValueError):
        tfidf_token_weights(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4), ["a", "a"])
    with pytest.raises(ValueError):
        tfidf_token_weights(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), ["a"])


def test_apply_token_weights_eq6():
    adv = torch.tensor([[0.5, 0.5, 0.5], [-1.0, -1.0, 0.0]])
    weights = torch.tensor([[1.0, 2.0, 3.0], [1.5, 1.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = apply_token_weights(adv, weights, mask)
    torch.testing.assert_close(out, torch.tensor([[0.5, 1.0, 1.5], [-1.5, -1.0, 0.0]]))


def test_gradient_weights_and_char_alignment():
    # CheXbert tokens "pleu", "##ral", " effusion" vs policy tokens "pleural", " effusion", "."
    source_spans = [(0, 4), (4, 7), (7, 16)]
    scores = [0.2, 0.6, 0.9]
    target_spans = [(0, 7), (7, 16), (16, 17)]
    aligned = align_max_by_char_spans(source_spans, scores, target_spans)
    assert aligned == [0.6, 0.9, 0.0]
    torch.testing.assert_close(saliency_token_weights(torch.tensor(aligned), beta=1.0), torch.tensor([1.6, 1.9, 1.0]))
    with pytest.raises(ValueError):
        align_max_by_char_spans(source_spans, scores[:2], target_spans)
