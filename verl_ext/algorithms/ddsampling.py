"""DDSampling, DEER's diagnostic-diversity data selection for RL (arXiv 2603.04022, Sec. 3.2, Eq. 3-5) — pure numpy.

For each training study the SFT model writes K reports (K = 10, nucleus sampling); CheXbert labels each with
binary findings ``p_c^(k)``. Then

* ``sigma_c = std_k p_c^(k)`` (Eq. 3) and ``D(I) = sum_c sigma_c`` (Eq. 4): `diagnostic_diversity`. The paper does
  not say which standard deviation; we use the population one (``ddof = 0``: the K reports are the whole sample),
  so a condition found in half of the reports contributes exactly 0.5;
* studies are ranked by D descending (rank 1 = most diverse; ties keep data order): `rank_descending`;
* ``P_r = 1 / (log(r + 1) * sum_{j=1..N} 1 / log(j + 1))`` (Eq. 5): `log_rank_probabilities` (the log base cancels);
* a subset of ``round(share * N)`` studies (20 % in the paper) is drawn **without replacement** with these
  probabilities from a seeded ``numpy.random.Generator``: `sample_by_rank`. (The paper says "we sample a data
  subset according to these probabilities"; drawing without replacement keeps every selected study distinct.)

Table 7's reward-diversity statistics of GRPO groups (`reward_diversity`): the share of zero-variance groups (all
rewards of the group equal), the mean number of distinct reward values per group, and the mean within-group reward
standard deviation (population).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

DEFAULT_K = 10  # DEER Sec. 4: K = 10 reports per image
DEFAULT_SHARE = 0.2  # DEER Sec. 4 / Table 1: 20 % of the RL training data


def diagnostic_diversity(labels) -> float:
    """``D(I) = sum_c std_k p_c^(k)`` for one study; ``labels``: K x C array of 0/1 (K reports, C conditions)."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"labels must be a K x C array with K >= 1, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must be binary (0/1)")
    return float(arr.astype(np.float64).std(axis=0).sum())


def rank_descending(scores: Sequence[float]) -> np.ndarray:
    """1-based rank of each study by score, highest first; equal scores keep their data order."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    ranks = np.empty(len(s), dtype=np.int64)
    ranks[order] = np.arange(1, len(s) + 1)
    return ranks


def log_rank_probabilities(n: int) -> np.ndarray:
    """``P_r`` for ranks r = 1..n (Eq. 5); sums to 1."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    inv = 1.0 / np.log(np.arange(2, n + 2, dtype=np.float64))
    return inv / inv.sum()


def subset_size(n: int, share: float) -> int:
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    return max(1, int(round(share * n)))


def sample_by_rank(scores: Sequence[float], share: float = DEFAULT_SHARE, seed: int = 0) -> np.ndarray:
    """Indices of the selected studies (in selection order), drawn without replacement with ``P_rank``."""
    ranks = rank_descending(scores)
    n = len(ranks)
    probs = log_rank_probabilities(n)[ranks - 1]
    rng = np.random.default_rng(seed)
    return rng.choice(n, size=subset_size(n, share), replace=False, p=probs)


def reward_diversity(groups: Sequence[Sequence[float]], decimals: Optional[int] = 6) -> dict[str, float]:
    """Table 7's statistics over reward groups (one group = the rewards of one study's reports).

    ``decimals`` rounds rewards before counting distinct values and equal groups (float noise is not diversity).
    """
    if not groups:
        raise ValueError("reward_diversity needs at least one group")
    zero, unique, stds = 0, [], []
    for g in groups:
        r = np.asarray(g, dtype=np.float64)
        if r.size == 0:
            raise ValueError("an empty reward group")
        if decimals is not None:
            r = np.round(r, decimals)
        n_unique = len(np.unique(r))
        zero += n_unique == 1
        unique.append(n_unique)
        stds.append(float(r.std()))
    return {
        "groups": float(len(groups)),
        "zero_variance_share": zero / len(groups),
        "unique_rewards_mean": float(np.mean(unique)),
        "reward_std_mean": float(np.mean(stds)),
    }


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m verl_ext.algorithms.ddsampling`` runs the command, `verl_ext.selection.ddsampling` (generation,
    CheXbert labels, selection, shards, manifest, report); this module stays pure."""
    from verl_ext.selection.ddsampling import main as command

    return command(argv)


if __name__ == "__main__":
    raise SystemExit(main())
