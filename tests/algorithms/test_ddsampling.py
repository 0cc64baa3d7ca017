"""Known answers for DDSampling (DEER Eq. 3-5) and Table 7's reward-diversity statistics."""
import math

import numpy as np
import pytest

from verl_ext.algorithms.ddsampling import (
    diagnostic_diversity,
    log_rank_probabilities,
    rank_descending,
    reward_diversity,
    sample_by_rank,
)


def test_diagnostic_diversity_known_answers():
    # K = 4 reports, C = 3 conditions: column 0 always 1 (std 0), column 1 half (std 0.5), column 2 one of four
    labels = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]])
    assert diagnostic_diversity(labels) == pytest.approx(0.0 + 0.5 + math.sqrt(0.25 * 0.75))
    assert diagnostic_diversity(np.zeros((10, 14))) == 0.0  # consistent reports carry no signal
    assert diagnostic_diversity(np.ones((1, 14))) == 0.0
    with pytest.raises(ValueError, match="binary"):
        diagnostic_diversity([[0, 2]])
    with pytest.raises(ValueError, match="K x C"):
        diagnostic_diversity([0, 1])


def test_log_rank_probabilities_known_answer():
    p = log_rank_probabilities(3)
    inv = np.array([1 / math.log(2), 1 / math.log(3), 1 / math.log(4)])
    np.testing.assert_allclose(p, inv / inv.sum())
    assert p[0] == pytest.approx(1 / (math.log(2) * inv.sum()))
    assert log_rank_probabilities(1).tolist() == [1.0]
    big = log_rank_probabilities(1000)
    assert big.sum() == pytest.approx(1.0) and np.all(np.diff(big) < 0) and big[-1] > 0  # never 0


def test_ranking_and_seeded_sampling():
    assert rank_descending([0.1, 0.9, 0.5, 0.9]).tolist() == [4, 1, 3, 2]
    scores = np.linspace(0, 1, 50)
    a, b = sample_by_rank(scores, share=0.2, seed=3), sample_by_rank(scores, share=0.2, seed=3)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10
    assert sample_by_rank(scores, 0.2, seed=4).tolist() != a.tolist()
    # high-diversity studies are preferred: over many seeds the top-ranked study is picked far more often
    picks = np.zeros(50)
    for seed in range(300):
        picks[sample_by_rank(scores, 0.2, seed=seed)] += 1
    assert picks[-1] > picks[0]
    with pytest.raises(ValueError, match="share"):
        sample_by_rank(scores, share=0.0)


def test_reward_diversity_known_answer():
    groups = [[1.0, 1.0, 1.0], [0.0, 0.5, 1.0], [0.2, 0.2, 0.4]]
    out = reward_diversity(groups)
    assert out["zero_variance_share"] == pytest.approx(1 / 3)
    assert out["unique_rewards_mean"] == pytest.approx((1 + 3 + 2) / 3)
    assert out["reward_std_mean"] == pytest.approx((0 + np.std([0, 0.5, 1]) + np.std([0.2, 0.2, 0.4])) / 3)
