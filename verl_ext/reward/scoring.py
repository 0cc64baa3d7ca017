"""Batch scoring of (response, reference) pairs into the radiology reward and its components.

``RewardScorer.score_batch(requests)`` is the one scoring path (the micro-batcher, the Ray actor, the benchmark and
the tests all call it). Per batch it:

1. checks each pair: an empty reference (or a non-text one) and a non-text response (a pipeline bug, e.g. None)
   make the pair invalid (``reference_not_text`` / ``empty_reference`` / ``response_not_text``); an empty response
   (only whitespace) scores 0 on every component and is never sent to a model;
2. computes the analyses the enabled components need, once per unique text of the batch and through per-text
   caches (a reference repeats G times per step and every epoch): RaTE analyses (adopting the edit step's
   precomputed analysis of a response when it is compatible), RadGraph annotations, CheXbert labels;
3. calls each component per pair and sums the weighted values.

Isolation: a batched analysis that fails (an exception, a model out of memory) is retried text by text, so only the
texts that fail on their own lose it: their pairs are invalid with ``<analysis>_error`` (rate / radgraph / chexbert)
and still get the components that do not need it; a component that raises on one pair makes that pair invalid with
``<component>_error``. Input caps: each scorer reads at most its model's own window (RaTE-NER 512 tokens per
sentence and BioLORD 30 per entity, as the RaTEScore package; RadGraph one BERT window of 512 wordpieces, which the
package does not enforce and whose cost grows super-linearly beyond it; CheXbert 512, as f1chexbert); a response
cut by any of them is counted (``overlong_response``), not dropped.

Each result belongs to its own pair by construction (analyses are looked up by text, not by position), so the
RaTEScore package's misalignment on empty reports cannot happen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from verl_ext.clinical.scorer import ClinicalScorer
from verl_ext.metrics.chexbert import binarize
from verl_ext.reward.components import ComponentConfigError, Invalid, PairData, get_component
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
    keys += ["invalid", "invalid_reason", "empty_response", "overlong_response", "analysis_reused", "is_edited"]
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
        self.counters = {
            "requests": 0,
            "batches": 0,
            "invalid": 0,
            "empty_responses": 0,
            "overlong_responses": 0,
            "analyses_reused": 0,
            "saliency_responses": 0,
            "saliency_s": 0.0,
        }

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[dict]:
        cfg = self.cfg
        n = len(requests)
        self.counters["requests"] += n
        self.counters["batches"] += 1
        resp_problem = [None if isinstance(r.response, str) else "response_not_text" for r in requests]
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
        empty = [resp_problem[i] is None and not responses[i].strip() for i in range(n)]
        scorable = [i for i in range(n) if not empty[i] and ref_problem[i] is None and resp_problem[i] is None]
        refs_ok = [i for i in range(n) if ref_problem[i] is None and resp_problem[i] is None]

        # texts each analysis runs on: scorable responses + valid references (for empty responses, references are
        # still analysed when a component may need them for validity, e.g. ratescore's entity-free reference check)
        resp_texts = list(dict.fromkeys(responses[i] for i in scorable))
        ref_texts = list(dict.fromkeys(references[i] for i in refs_ok))
        failed: dict[str, dict[str, str]] = {}  # analysis -> {text: error}

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

            def rate_fn(chunk):
                analyses, reused = self.clinical.rate_analyses(chunk, [pre.get(t) for t in chunk])
                return list(zip(analyses, reused))

            both, failed["rate"] = _isolated(rate_fn, texts, "rate")
            rate_of = {t: v[0] for t, v in both.items()}
            reused_of = {t: v[1] for t, v in both.items()}
        rg_of: dict[str, dict] = {}
        if "radgraph" in self.needs and (resp_texts or ref_texts):
            texts = list(dict.fromkeys(resp_texts + ref_texts))
            rg_of, failed["radgraph"] = _isolated(self.clinical.radgraph_annotations, texts, "radgraph")
        cx_of: dict[str, Any] = {}
        cx_raw_of: dict[str, Any] = {}
        if "chexbert" in self.needs and (resp_texts or ref_texts):
            texts = list(dict.fromkeys(resp_texts + ref_texts))

            def chexbert_fn(chunk):
                return list(self.clinical.chexbert_classes(chunk))

            cx_raw_of, failed["chexbert"] = _isolated(chexbert_fn, texts, "chexbert")
            cx_of = {t: binarize(c, uncertain=cfg.chexbert_uncertain) for t, c in cx_raw_of.items()}

        results = []
        for i in range(n):
            resp, ref = responses[i], references[i]
            info: dict[str, Any] = {name: 0.0 for name in cfg.components}
            reasons: list[str] = []
            reused = False
            overlong = False
            n_ent = 0
            if resp_problem[i] is not None:
                reasons.append(resp_problem[i])
            elif ref_problem[i] is not None:
                reasons.append(ref_problem[i])
            elif empty[i]:
                # 0 on every component; still report a reference that could never be scored
                if "rate" in self.needs and ref in failed.get("rate", {}):
                    reasons.append("rate_error")
                elif "rate" in self.needs and not rate_of[ref].entities:
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
                    broken = sorted(a for a in comp.needs if resp in failed.get(a, {}) or ref in failed.get(a, {}))
                    if broken:
                        reasons.extend(f"{a}_error" for a in broken)
                        continue
                    try:
                        value = comp.fn(pair, cfg)
                    except ComponentConfigError:
                        raise
                    except Exception:  # noqa: BLE001 - only this pair loses this component
                        logger.exception("reward component %r failed on one pair; it scores 0 there", name)
                        value = Invalid(f"{name}_error")
                    if isinstance(value, Invalid):
                        reasons.append(value.reason)
                        value = 0.0
                    info[name] = float(value)
                if len(resp) > 128:
                    try:
                        overlong = bool(self.clinical.overlong(resp, self.needs, rate_of.get(resp), rg_of.get(resp)))
                    except Exception:  # noqa: BLE001 - counting must not fail the pair
                        logger.exception("reward: could not check the response length against the scorers' limits")
            step = requests[i].global_step
            score = sum(cfg.weight_at(name, step) * info[name] for name, _, _ in self.components)
            if "ratescore" in cfg.components:
                info["response_rate_entities"] = n_ent
            info["invalid"] = int(bool(reasons))
            info["invalid_reason"] = ";".join(dict.fromkeys(reasons))
            info["empty_response"] = int(empty[i])
            info["overlong_response"] = int(overlong)
            info["analysis_reused"] = int(reused)
            info["is_edited"] = int(bool(requests[i].is_edited))
            self.counters["invalid"] += info["invalid"]
            self.counters["empty_responses"] += info["empty_response"]
            self.counters["overlong_responses"] += info["overlong_response"]
            self.counters["analyses_reused"] += info["analysis_reused"]
            results.append({"reward_score": float(score), "reward_extra_info": info})
        if cfg.token_weights != "none":
            targets = {t: binarize(c, uncertain=cfg.ditpo_uncertain) for t, c in cx_raw_of.items()}
            self._add_token_weights(requests, results, scorable, targets, references)
        return results

    def _add_token_weights(self, requests, results, scorable: list[int], cx_of: dict, references: list[str]) -> None:
        """Gradient-based DiTPO weights (``verl_ext.reward.token_weights``) into each result's token channel;
        ``cx_of``: text -> binary CheXbert labels under ``ditpo_uncertain`` (the target sets T)."""
        import time

        from verl_ext.reward.token_weights import ditpo_gradient_channels
        from verl_ext.token_channel import put_reward_info

        # non-empty response, valid reference whose CheXbert labels exist (a failed labelling stays with its pair)
        todo = [i for i in scorable if requests[i].token_spans is not None and references[i] in cx_of]
        channels: dict[int, Any] = {}
        if todo:
            start = time.perf_counter()
            texts = [requests[i].saliency_text if requests[i].saliency_text is not None else requests[i].response
                     for i in todo]

            def saliency(rows: list[int]) -> list:
                made, _ = ditpo_gradient_channels(
                    self.clinical.chexbert.m, [texts[r] for r in rows], [requests[todo[r]].token_spans for r in rows],
                    [cx_of[references[todo[r]]] for r in rows], beta=self.cfg.ditpo_beta,
                    logit_classes=self.cfg.ditpo_logit_classes, batch_size=self.cfg.saliency_batch_size,
                )
                return made

            # One batched backward; if it fails, response by response, so one bad response only loses its own
            # weights (ditpo_weighted=0 in its reward_extra_info, logged).
            made_of, _errors = _isolated(saliency, list(range(len(todo))), "chexbert saliency")
            channels = {todo[r]: made for r, made in made_of.items()}
            self.counters["saliency_responses"] += len(channels)
            self.counters["saliency_s"] += time.perf_counter() - start
        for i, res in enumerate(results):
            info = res["reward_extra_info"]
            info["ditpo_weighted"] = int(i in channels)
            put_reward_info(info, channels.get(i))


def _isolated(fn, texts: list[str], name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``fn`` over ``texts`` as one batch; if the batch fails (an error, or a model out of memory on one input),
    text by text, so only the texts that fail on their own lose this analysis. Returns ({text: value},
    {text: error})."""
    if not texts:
        return {}, {}
    try:
        return dict(zip(texts, fn(texts))), {}
    except Exception as exc:  # noqa: BLE001
        if len(texts) == 1:
            logger.error("reward: %s analysis failed on one text: %r", name, exc)
            return {}, {texts[0]: f"{type(exc).__name__}: {exc}"}
        logger.warning("reward: batched %s analysis of %d texts failed (%r); retrying one by one", name, len(texts),
                       exc)
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for t in texts:
        try:
            values[t] = fn([t])[0]
        except Exception as exc:  # noqa: BLE001
            what = f"{len(t)} chars" if isinstance(t, str) else f"item {t!r}"
            logger.error("reward: %s analysis failed on one input (%s): %r", name, what, exc)
            errors[t] = f"{type(exc).__name__}: {exc}"
    return values, errors
