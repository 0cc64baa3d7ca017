"""Gradient-based DiTPO weights in the reward path (DEER Sec. 3.3, Eq. 9-12), into the per-token channel.

The reward scorer already holds CheXbert and the decoded response; the reward manager adds each response's
policy-token character spans (``ScoreRequest.token_spans``, from exact decode offsets). For every scorable request
of a batch:

1. T = the reference's positive CheXbert conditions (uncertain counted as ``ditpo_uncertain`` says, default negative:
   DEER's positive = class 1);
2. CheXbert saliency of the response for T (`verl_ext.clinical.chexbert_saliency`, one backward per micro-batch);
3. each policy token gets the maximum score over the CheXbert tokens its characters overlap (0 without overlap);
4. ``w = 1 + beta * s~`` (Eq. 12, no normalisation), stored as the ``ditpo_weight`` array of the trajectory's
   channel (`verl_ext.token_channel`); the trainer multiplies the advantages by it (Eq. 6).

Empty responses and invalid pairs get no array (weights stay 1); a request without spans (e.g. evaluation CLIs)
is skipped. ``ditpo_weighted`` (0/1) in ``reward_extra_info`` says whether a sample got weights. Validation
samples get weights too: the reward manager cannot tell them apart in verl 0.9.1 (``verl_ext.reward.manager``).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from verl_ext.algorithms.ditpo import align_max_by_chars
from verl_ext.token_channel import DITPO_WEIGHT, Channel

logger = logging.getLogger(__name__)

TOKEN_WEIGHTS = ("none", "chexbert_gradient")


def ditpo_gradient_channels(
    chexbert,
    texts: Sequence[str],
    token_spans: Sequence[Sequence[Optional[tuple[int, int]]]],
    reference_labels: Sequence[np.ndarray],
    beta: float,
    logit_classes: str = "positive",
    batch_size: int = 32,
) -> tuple[list[Channel], dict[str, Any]]:
    """One channel with ``ditpo_weight`` per text; also the saliency statistics of the batch."""
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency

    targets = [np.flatnonzero(np.asarray(lab)).tolist() for lab in reference_labels]
    saliencies = chexbert_saliency(chexbert, texts, targets, logit_classes=logit_classes, batch_size=batch_size)
    channels = []
    for sal, spans in zip(saliencies, token_spans):
        aligned = align_max_by_chars(sal.spans, sal.scores, list(spans))
        channels.append(Channel().put_array(DITPO_WEIGHT, 1.0 + float(beta) * aligned))
    scores = np.concatenate([s.scores for s in saliencies]) if saliencies else np.zeros(0)
    stats = {"tokens": int(scores.size), "max": float(scores.max()) if scores.size else 0.0}
    return channels, stats
