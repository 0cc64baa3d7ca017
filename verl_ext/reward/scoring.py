"""Batch scoring of (response, reference) pairs into the radiology reward and its components.

``RewardScorer.score_batch(requests)`` is the one scoring path (the micro-batcher, the Ray actor, the benchmark and
the tests all call it). Per batch it:

1. checks each pair: an empty reference (or a non-text one) makes the pair invalid; an empty response (only
   whitespace) scores 0 on every component and is never sent to a model;
2. computes the analyses the enabled components need, once per unique text of the batch and through per-text
   caches (a reference repeats G times per step and every epoch): RaTE analyses (adopting the edit step's
   precomputed analysis of a response when it is compatible), RadGraph annotations, CheXbert labels;
3. calls each component per pair and sums the weighted values.

Each result belongs to its own pair by construction (analyses are looked up by text, not by position), so the
RaTEScore package's misalignment on empty reports cannot happen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from verl_ext.clinical.scorer import ClinicalScorer
from verl_ext.metrics.chexbert import binarize
from verl_ext.reward.components import Invalid, PairData, get_component
from verl_ext.reward.config import RadiologyRewardConfig

logger = logging.getLogger(__name__)


@dataclass
class ScoreRequest:
    response: str
    reference: Any
    analysis: Any = None
    """A precomputed RaTE ``ReportAnalysis`` (or dict) of ``response``, e.g. from the edit step; optional."""
    is_edited: bool = False
    global_step: Optional[int] = None
    """Training step of the trajectory (for ``component_schedules``); None: base weights."""
    token_spans: Optional[list] = None
    """Character span (or None) of each response token in ``saliency_text``; needed for DiTPO token weights."""
    saliency_text: Optional[str] = None
    """The decoded text ``token_spans`` refer to (default: ``response``)."""


class InvalidSampleError(ValueError):
    """Raised (with ``on_invalid="raise"``) for a sample that cannot be scored."""


def extra_info_keys(cfg: RadiologyRewardConfig) -> list[str]:
    """The keys of every ``reward_extra_info`` (verl requires the same keys for every sample)."""
    keys = list(cfg.components)
    if "ratescore" in cfg.components:
        keys.append("response_rate_entities")
    keys += ["invalid", "invalid_reason", "empty_response", "analysis_reused", "is_edited"]
    if cfg.token_weights != "none":
        from verl_ext.token_channel import CHANNEL_KEY

        keys += ["ditpo_weighted", CHANNEL_KEY]
    return keys


class RewardScorer:
    def __init__(self, cfg: RadiologyRewardConfig, clinical: Optional[ClinicalScorer] = None):
        self.cfg = cfg
        self.components = [(name, float(w), get_component(name)) for name, w in cfg.components.items()]
        self.needs = set().union(*(c.needs for _, _, c in self.components))
        if cfg.token_weights != "none":
            self.needs.add("chexbert")
        self.clinical = clinical or ClinicalScorer(cfg.scorer_config())
        self.context: dict = {}
        self.counters = {"requests": 0, "batches": 0, "invalid": 0, "empty_responses": 0, "analyses_reused": 0,
                         "saliency_responses": 0, "saliency_s": 0.0}

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[dict]:
        cfg = self.cfg
        n = len(requests)
        self.counters["requests"] += n
        self.counters["batches"] += 1
        responses = [r.response if isinstance(r.response, str) else "" for r in requests]
        ref_problem: list[Optional[str]] = []
        references: list[str] = []
        for r in requests:
            if not isinstance(r.reference, str):
                ref_problem.append("reference_not_text")
                references.append("")
            elif not r.reference.strip():
                ref_problem.append("empty_reference")
                references.append(r.reference)
            else:
                ref_problem.append(None)
                references.append(r.reference)
        empty = [not t.strip() for t in responses]
        scorable = [i for i in range(n) if not empty[i] and ref_problem[i] is None]
        refs_ok = [i for i in range(n) if ref_problem[i] is None]

        # texts each analysis runs on: scorable responses + valid references (for empty responses, references are
        # still analysed when a component may need them for validity, e.g. ratescore's entity-free reference check)
        resp_texts = list(dict.fromkeys(responses[i] for i in scorable))
        ref_texts = list(dict.fromkeys(references[i] for i in refs_ok))

        rate_of: dict[str, Any] = {}
        reused_of: dict[str, bool] = {}
        if "rate" in self.needs and (resp_texts or ref_texts):
            pre = {}
            if cfg.reuse_edit_analysis:
                for i in scorable:
                    if requests[i].analysis is not None:
                        pre.setdefault(responses[i], requests[i].analysis)
            resp_set = set(resp_texts)
            texts = resp_texts + [t for t in ref_texts if t not in resp_set]
            analyses, reused = self.clinical.rate_analyses(texts, [pre.get(t) for t in texts])
            rate_of = dict(zip(texts, analyses))
            reused_of = dict(zip(texts, reused))
        rg_of: dict[str, dict] = {}
        if "radgraph" in self.needs and (resp_texts or ref_texts):
            texts = list(dict.fromkeys(resp_texts + ref_texts))
            rg_of = dict(zip(texts, self.clinical.radgraph_annotations(texts)))
        cx_of: dict[str, Any] = {}
        cx_raw_of: dict[str, Any] = {}
        if "chexbert" in self.needs and (resp_texts or ref_texts):
            texts = list(dict.fromkeys(resp_texts + ref_texts))
            classes = self.clinical.chexbert_classes(texts)
            cx_raw_of = dict(zip(texts, classes))
            cx_of = dict(zip(texts, binarize(classes, uncertain=cfg.chexbert_uncertain)))

        results = []
        for i in range(n):
            resp, ref = responses[i], references[i]
            info: dict[str, Any] = {name: 0.0 for name in cfg.components}
            reasons: list[str] = []
            reused = False
            n_ent = 0
            if ref_problem[i] is not None:
                reasons.append(ref_problem[i])
            elif empty[i]:
                # 0 on every component; still report a reference that could never be scored
                if "rate" in self.needs and not rate_of[ref].entities:
                    reasons.append("reference_without_rate_entities")
            else:
                pair = PairData(
                    response=resp,
                    reference=ref,
                    rate_response=rate_of.get(resp),
                    rate_reference=rate_of.get(ref),
                    radgraph_response=rg_of.get(resp),
                    radgraph_reference=rg_of.get(ref),
                    chexbert_response=cx_of.get(resp),
                    chexbert_reference=cx_of.get(ref),
                    chexbert_response_classes=cx_raw_of.get(resp),
                    chexbert_reference_classes=cx_raw_of.get(ref),
                    rate_analyzer=self.clinical._rate,
                    context=self.context,
                )
                reused = reused_of.get(resp, False)
                if pair.rate_response is not None:
                    n_ent = len(pair.rate_response.entities)
                for name, _, comp in self.components:
                    value = comp.fn(pair, cfg)
                    if isinstance(value, Invalid):
                        reasons.append(value.reason)
                        value = 0.0
                    info[name] = float(value)
            step = requests[i].global_step
            score = sum(cfg.weight_at(name, step) * info[name] for name, _, _ in self.components)
            if "ratescore" in cfg.components:
                info["response_rate_entities"] = n_ent
            info["invalid"] = int(bool(reasons))
            info["invalid_reason"] = ";".join(dict.fromkeys(reasons))
            info["empty_response"] = int(empty[i])
            info["analysis_reused"] = int(reused)
            info["is_edited"] = int(bool(requests[i].is_edited))
            self.counters["invalid"] += info["invalid"]
            self.counters["empty_responses"] += info["empty_response"]
            self.counters["analyses_reused"] += info["analysis_reused"]
            results.append({"reward_score": float(score), "reward_extra_info": info})
        if cfg.token_weights != "none":
            self._add_token_weights(requests, results, scorable, cx_of, references)
        return results

    def _add_token_weights(self, requests, results, scorable: list[int], cx_of: dict, references: list[str]) -> None:
        """Gradient-based DiTPO weights (``verl_ext.reward.token_weights``) into each result's token channel."""
        import time

        from verl_ext.reward.token_weights import ditpo_gradient_channels
        from verl_ext.token_channel import put_reward_info

        todo = [i for i in scorable if requests[i].token_spans is not None]  # non-empty response, valid reference
        channels: dict[int, Any] = {}
        if todo:
            start = time.perf_counter()
            texts = [requests[i].saliency_text if requests[i].saliency_text is not None else requests[i].response
                     for i in todo]
            made, _ = ditpo_gradient_channels(
                self.clinical.chexbert.m, texts, [requests[i].token_spans for i in todo],
                [cx_of[references[i]] for i in todo], beta=self.cfg.ditpo_beta,
                logit_classes=self.cfg.ditpo_logit_classes, batch_size=self.cfg.saliency_batch_size,
            )
            channels = dict(zip(todo, made))
            self.counters["saliency_responses"] += len(todo)
            self.counters["saliency_s"] += time.perf_counter() - start
        for i, res in enumerate(results):
            info = res["reward_extra_info"]
            info["ditpo_weighted"] = int(i in channels)
            put_reward_info(info, channels.get(i))
