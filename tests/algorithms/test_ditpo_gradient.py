"""Known answers for the pure parts of gradient-based DiTPO (DEER Eq. 12 and the character mapping)."""
import numpy as np
import pytest
import torch

from verl_ext.algorithms.ditpo import (
    align_max_by_char_spans,
    align_max_by_chars,
    saliency_token_weights,
    spans_from_bounds,
)


def test_eq12_one_plus_beta_times_saliency():
    s = torch.tensor([0.0, 0.5, 2.0])
    torch.testing.assert_close(saliency_token_weights(s, beta=1.0), torch.tensor([1.0, 1.5, 3.0]))
    torch.testing.assert_close(saliency_token_weights(s, beta=0.5), torch.tensor([1.0, 1.25, 2.0]))


def test_max_over_overlapping_characters():
    # text "pleural effusion": CheXbert pieces "pleural"(0-7) 0.2, "eff"(8-11) 0.9, "##usion"(11-16) 0.4
    src, scores = [(0, 7), (8, 11), (11, 16)], [0.2, 0.9, 0.4]
    # policy tokens "ple"(0-3), "ural effu"(3-12: overlaps all three), " "(7-8: none), "sion"(12-16), eos None
    tgt = [(0, 3), (3, 12), (7, 8), (12, 16), None]
    expected = [0.2, 0.9, 0.0, 0.4, 0.0]
    assert align_max_by_chars(src, scores, tgt).tolist() == pytest.approx(expected)
    assert align_max_by_char_spans(src, scores, [t or (0, 0) for t in tgt]) == pytest.approx(expected)


def test_fast_alignment_equals_reference_on_random_spans():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cuts = np.sort(rng.choice(np.arange(1, 60), size=12, replace=False))
        src = list(zip([0, *cuts[:-1]], cuts))
        scores = rng.random(len(src)).tolist()
        tcuts = np.sort(rng.choice(np.arange(1, 60), size=8, replace=False))
        tgt = list(zip([0, *tcuts[:-1]], tcuts))
        np.testing.assert_allclose(align_max_by_chars(src, scores, tgt), align_max_by_char_spans(src, scores, tgt))


def test_spans_from_bounds():
    # 3 content tokens "ab" "c" "d" + 1 stop token; a split multi-byte char: bounds[2] undefined
    assert spans_from_bounds((0, 2, 3, 4), 4) == [(0, 2), (2, 3), (3, 4), None]
    assert spans_from_bounds((0, 1, None, 2), 3) == [(0, 1), (1, 2), (1, 2)]
    assert spans_from_bounds((0, 0, 3), 2) == [None, (0, 3)]  # a zero-width special token
