"""Reward of ``bench/learning_curves.py``: the CPU demo's lexicon concept F1, plus the rare finding's hit.

verl's ``naive`` reward manager calls ``compute_score`` (``reward.custom_reward_function.path=<this file>``). The score
is ``examples/cpu_demo_reward.py``'s concept F1 of the response against the full, correct reference. Two extra fields
go to verl's logs (validation dumps and ``val-aux`` metrics) so the benchmark can read the rare finding's recall from
the trainer's own output: ``rare_in_ref`` (the reference states the rare fact) and ``rare_hit`` (it does, and so does
the response); and ``contradicts``: the response states a finding the reference also states, with another presence
(``--sft-conflict``'s warm-up error). The rare fact is the lexicon concept of ``rare_sentence`` with presence
"present" (default ``bench/learning_curves.py``'s pleural effusion), so any wording of it counts ("small effusion",
"pleural effusion").
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

_DEMO_REWARD = Path(__file__).resolve().parents[1] / "examples" / "cpu_demo_reward.py"
RARE_SENTENCE = "There is a small right pleural effusion."


@functools.lru_cache(maxsize=1)
def _demo_reward():
    spec = importlib.util.spec_from_file_location("cpu_demo_reward", _DEMO_REWARD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=4)
def rare_facts(rare_sentence: str = RARE_SENTENCE) -> frozenset:
    """The (concept, presence) facts of `rare_sentence`; it must state exactly one present finding."""
    demo = _demo_reward()
    found = {f for f in demo.facts(demo.analyzer().analyze([rare_sentence])[0]) if f[1] == "present"}
    if len(found) != 1:
        raise ValueError(f"rare_sentence={rare_sentence!r} states {len(found)} present findings; it needs exactly one")
    return frozenset(found)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, rare_sentence: str = RARE_SENTENCE,
                  **kwargs):
    demo = _demo_reward()
    extra_info = extra_info or {}
    response, reference = demo.analyzer().analyze([solution_str, ground_truth])
    rare = rare_facts(rare_sentence)
    in_ref = bool(rare & demo.facts(reference))
    hit = in_ref and bool(rare & demo.facts(response))
    stated = demo.facts(reference)
    concepts = {concept for concept, _ in stated}
    contradicts = any(c in concepts and (c, p) not in stated for c, p in demo.facts(response))
    f1, precision, recall = demo.concept_f1(solution_str, ground_truth)
    return {
        "score": f1,
        "concept_precision": precision,
        "concept_recall": recall,
        "rare_in_ref": float(in_ref),
        "rare_hit": float(hit),
        "contradicts": float(contradicts),
        "is_edited": float(bool(extra_info.get("is_edited", False))),
    }
