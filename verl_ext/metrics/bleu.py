"""Sentence-level BLEU-n (BLEU-2 is the DEER reward's text term) — pure Python.

``bleu(hypothesis, reference, n=2)`` = BP * exp(sum_k (1/n) log p_k), with p_k the clipped k-gram precision and
BP = exp(1 - r/c) when the hypothesis (c tokens) is shorter than the reference (r tokens), else 1. No smoothing: a
zero k-gram precision gives 0, an empty hypothesis gives 0 (nltk's ``sentence_bleu`` without smoothing returns the
same numbers). Tokens: lower-cased words and single punctuation marks (``\\w+|[^\\w\\s]``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(str(text).lower())


def _ngrams(tokens: list[str], k: int) -> Counter:
    return Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1))


def bleu(hypothesis: str, reference: str, n: int = 2) -> float:
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    log_sum = 0.0
    for k in range(1, n + 1):
        h, r = _ngrams(hyp, k), _ngrams(ref, k)
        total = sum(h.values())
        matched = sum(min(c, r[g]) for g, c in h.items())
        if total == 0 or matched == 0:
            return 0.0
        log_sum += math.log(matched / total) / n
    c, r = len(hyp), len(ref)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_sum)
