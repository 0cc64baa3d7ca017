"""The CPU demo's reward: clinical-concept F1 between a report and its reference, with presence (model-free).

A stand-in for the paper's reward (RadGraph-F1 + CheXbert micro-F1-14 + RaTEScore, ``verl_ext.reward``), whose
neural scorers need real weights. Both reports go through the project's lexicon analyzer
(``verl_ext.clinical.lexicon``: CXR lexicon + medspaCy ConText); a report's *facts* are its (concept, presence)
pairs, e.g. (pleural effusion, present), (pneumothorax, absent); the score is the F1 of the response's facts against
the reference's (0 for an empty response). Concepts are identified by the analyzer's canonical concept keys, so
"heart size is normal" and "no cardiomegaly" are the same fact.

verl calls ``compute_score`` from its ``naive`` reward manager inside the reward-loop worker
(``reward.custom_reward_function.path=examples/cpu_demo_reward.py``); ``extra_info`` carries the trajectory's
edit fields, and ``is_edited`` is passed through for the sampled-vs-edited metrics.
"""
from __future__ import annotations

import hashlib
import threading

import numpy as np

_LOCK = threading.Lock()
_ANALYZER = None


def _concept_vectors(keys):
    """A distinct unit vector per canonical concept key (the analyzer's embedding hook; no model needed)."""
    out = np.zeros((len(keys), 64), dtype=np.float32)
    for i, key in enumerate(keys):
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(64)
        out[i] = v / np.linalg.norm(v)
    return out


def analyzer():
    global _ANALYZER
    with _LOCK:
        if _ANALYZER is None:
            from verl_ext.clinical.lexicon import LexiconAnalyzer, LexiconAnalyzerConfig

            _ANALYZER = LexiconAnalyzer(LexiconAnalyzerConfig(device="cpu"), embedder=_concept_vectors)
        return _ANALYZER


def facts(analysis) -> set:
    out = set()
    for entity in analysis.entities:
        if entity.type == "ANATOMY":
            continue
        key = np.round(entity.embedding, 4).tobytes()  # same canonical concept <=> same vector
        out.add((key, entity.presence))
    return out


def concept_f1(response: str, reference: str) -> tuple[float, float, float]:
    a, b = analyzer().analyze([response, reference])
    got, want = facts(a), facts(b)
    if not response.strip() or not got or not want:
        return 0.0, 0.0, 0.0
    tp = len(got & want)
    precision, recall = tp / len(got), tp / len(want)
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return f1, precision, recall


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    extra_info = extra_info or {}
    f1, precision, recall = concept_f1(solution_str, ground_truth)
    return {
        "score": f1,
        "concept_precision": precision,
        "concept_recall": recall,
        "is_edited": float(bool(extra_info.get("is_edited", False))),
    }
