"""DiTPO token weights (DEER, arXiv 2603.04022, Sec. 3.3): ``A_i^t = A_i * w_i^t`` (Eq. 6).

``A_i`` is the sequence-level group advantage (DEER uses std-normalised GRPO, its Eq. 2; any of verl's group
estimators works), ``w_i^t`` a per-token weight:

* **rule-based** (Eq. 7-8): ``w_i^t = 1 + alpha * TF(o_i^t, o_i) * IDF(o_i^t, {o_1..o_N})``, statistics over the N
  responses of the same prompt (the ``uid`` group) and over the policy's own token ids. The paper does not spell
  out TF and IDF; we use the textbook forms ``TF = count of the token in o_i / |o_i|`` and
  ``IDF = ln(N / number of responses in the group containing the token)``, so a token that every response of the
  group uses gets weight exactly 1 ("w ~ 1 for boilerplate"). The paper's value is ``alpha = 4`` (Sec. 4,
  "Implementation Details").
* **gradient-based** (Eq. 9-12): ``w_i^t = 1 + beta * s~_i^t``, where ``s~`` is the L2 norm of the gradient of the
  summed CheXbert positive logits of the reference's positive classes w.r.t. CheXbert's input embeddings, mapped
  from CheXbert tokens to policy tokens by the maximum over overlapping characters (``beta = 1`` in the paper).
  `saliency_token_weights`, `align_max_by_char_spans` / `align_max_by_chars` and `spans_from_bounds` are the pure
  parts; the saliency itself (`verl_ext.clinical.chexbert_saliency`) runs in the reward path, where CheXbert and the
  decoded text are (`verl_ext.reward.token_weights`), and the weights reach the advantage step through the per-token
  channel (`verl_ext.token_channel`, applied by `verl_ext.trainer.token_channel_step`).

Why not a registered ``adv_estimator``: verl calls estimators with ``token_level_rewards, response_mask, index,
config`` only, never the response token ids, so TF-IDF cannot be computed there. The ``editgrpo`` trainer applies
`tfidf_token_weights` (``ditpo.weighting=tfidf``) or the channel's gradient weights (``ditpo.weighting=gradient``)
after the configured estimator.

Pure torch; no verl import.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch

WEIGHTINGS = ("none", "tfidf", "gradient")
DEFAULT_ALPHA = 4.0  # DEER Sec. 4, rule-based DiTPO
DEFAULT_BETA = 1.0  # DEER Sec. 4, gradient-based DiTPO


def _group_rows(index: Sequence) -> dict:
    groups: dict = defaultdict(list)
    for row, key in enumerate(index):
        groups[key].append(row)
    return groups


@torch.no_grad()
def tfidf_token_weights(
    responses: torch.Tensor, response_mask: torch.Tensor, index: Sequence, alpha: float = DEFAULT_ALPHA
) -> torch.Tensor:
    """Rule-based DiTPO weights (DEER Eq. 7-8) for every response token; 1.0 outside the mask.

    Args:
        responses: (bs, L) policy token ids, right-padded.
        response_mask: (bs, L) 1 on response tokens that take part in the loss.
        index: (bs,) group ids (``uid``): TF-IDF statistics are taken over each group's responses.
        alpha: strength of the reweighting.

    Returns:
        (bs, L) float32 weights.
    """
    if responses.shape != response_mask.shape:
        raise ValueError(f"responses {tuple(responses.shape)} and response_mask {tuple(response_mask.shape)} differ")
    if len(index) != responses.shape[0]:
        raise ValueError(f"index has {len(index)} entries for {responses.shape[0]} responses")
    weights = torch.ones(responses.shape, dtype=torch.float32)
    mask = response_mask.bool().cpu()
    tokens = responses.cpu()
    for rows in _group_rows(index).values():
        # per row: token id -> count, over the masked tokens only
        counts = []
        for row in rows:
            ids, cnt = torch.unique(tokens[row][mask[row]], return_counts=True)
            counts.append(dict(zip(ids.tolist(), cnt.tolist())))
        doc_freq: dict[int, int] = defaultdict(int)
        for row_counts in counts:
            for token in row_counts:
                doc_freq[token] += 1
        n_docs = len(rows)
        for row, row_counts in zip(rows, counts):
            length = sum(row_counts.values())
            if length == 0:
                continue
            score = {
                token: (cnt / length) * math.log(n_docs / doc_freq[token]) for token, cnt in row_counts.items()
            }
            positions = mask[row].nonzero(as_tuple=True)[0]
            values = torch.tensor([score[t] for t in tokens[row, positions].tolist()], dtype=torch.float32)
            weights[row, positions] = 1.0 + alpha * values
    return weights


def saliency_token_weights(saliency: torch.Tensor, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """Gradient-based DiTPO weights (DEER Eq. 12): ``1 + beta * s~`` (no further normalisation, as in the paper)."""
    return 1.0 + beta * saliency.float()


def align_max_by_char_spans(
    source_spans: Sequence[tuple[int, int]], source_scores: Sequence[float], target_spans: Sequence[tuple[int, int]]
) -> list[float]:
    """Map scores of source tokens (CheXbert's) onto target tokens (the policy's) by character overlap.

    Each target token gets the maximum score over source tokens whose [start, end) character span overlaps its own
    (DEER Sec. 3.3, "taking the maximum"); 0.0 when none overlaps (special tokens, whitespace).
    """
    if len(source_spans) != len(source_scores):
        raise ValueError(f"{len(source_spans)} source spans but {len(source_scores)} scores")
    out = []
    for t_start, t_end in target_spans:
        best = 0.0
        for (s_start, s_end), score in zip(source_spans, source_scores):
            if s_start < t_end and t_start < s_end:
                best = max(best, float(score))
        out.append(best)
    return out


def align_max_by_chars(
    source_spans: Sequence[tuple[int, int]],
    source_scores: Sequence[float],
    target_spans: Sequence[Optional[tuple[int, int]]],
) -> np.ndarray:
    """`align_max_by_char_spans` in O(characters + tokens): a per-character maximum, then a maximum per target span.

    A target span of ``None`` (a token with no characters: end-of-turn, special tokens) gets 0.0.
    """
    if len(source_spans) != len(source_scores):
        raise ValueError(f"{len(source_spans)} source spans but {len(source_scores)} scores")
    ends = [e for _, e in source_spans] + [e for span in target_spans if span is not None for e in span[1:]]
    chars = np.zeros(max(ends, default=0) + 1, dtype=np.float64)
    for (s0, s1), score in zip(source_spans, source_scores):
        if s1 > s0:
            np.maximum(chars[s0:s1], float(score), out=chars[s0:s1])
    out = np.zeros(len(target_spans), dtype=np.float64)
    for k, span in enumerate(target_spans):
        if span is not None and span[1] > span[0]:
            out[k] = chars[span[0] : span[1]].max()
    return out


def spans_from_bounds(bounds: Sequence[Optional[int]], n_tokens: int) -> list[Optional[tuple[int, int]]]:
    """Character span of each of ``n_tokens`` policy tokens from decode offsets (``DecodedResponse.bounds``).

    ``bounds[k]`` is the offset after the first k content tokens (``None`` inside a split multi-byte character: the
    token then covers the whole character, start rounded down and end rounded up). Tokens past the content (stop
    tokens) and zero-width tokens get ``None``.
    """
    content = len(bounds) - 1
    spans: list[Optional[tuple[int, int]]] = []
    for k in range(n_tokens):
        if k >= content:
            spans.append(None)
            continue
        start = next((bounds[j] for j in range(k, -1, -1) if bounds[j] is not None), 0)
        end = next((bounds[j] for j in range(k + 1, content + 1) if bounds[j] is not None), None)
        spans.append((start, end) if end is not None and end > start else None)
    return spans


def apply_token_weights(advantages: torch.Tensor, weights: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``A_i^t = A_i^t * w_i^t`` on response tokens, 0 elsewhere (DEER Eq. 6)."""
    return advantages * weights.to(advantages.dtype) * response_mask.to(advantages.dtype)
