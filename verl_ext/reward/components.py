"""Reward components: a registry of named per-pair scores the radiology reward sums with weights.

A component declares which analyses it needs ("rate", "radgraph", "chexbert"); the scorer computes those once per
batch for every unique text, then calls each enabled component per pair. A component returns a float or
``Invalid(reason)`` (the pair cannot be scored on this component; see ``RadiologyRewardConfig.on_invalid``). Any
other exception makes only that pair invalid (``<name>_error``), except ``ComponentConfigError`` (misconfiguration),
which stops scoring.
Empty responses never reach a component: every component scores them 0.

Built in:

| name                        | needs    | value                                                                 |
|-----------------------------|----------|-----------------------------------------------------------------------|
| ``radgraph_f1``             | radgraph | RadGraph F1 at ``radgraph_level`` (default partial = RG_ER)           |
| ``chexbert_micro_f1_14``    | chexbert | per-pair micro-F1 over the 14 CheXbert labels (uncertain = positive)  |
| ``ratescore``               | rate     | RaTEScore; ``ratescore_no_entity`` (0.5, the package's) for a response |
|                             |          | without entities; reference without entities -> Invalid (the package  |
|                             |          | would give every response 0.5)                                        |
| ``chexbert_inverse_frequency`` | chexbert | the "IF" reward of the paper's Fig. 3 (needs ``class_frequencies``) |
| ``bleu2``                   | -        | sentence BLEU-``bleu_n`` (DEER's text term)                           |
| ``facts``                   | rate,    | FactS F_beta (OraPO): RaTE entities as facts vs the reference's       |
|                             | chexbert | CheXbert labels (``verl_ext.reward.facts``)                           |
| ``facts_radgraph``          | radgraph,| FactS F_beta with RadGraph observations as the facts                  |
|                             | chexbert |                                                                       |
| ``facts_llm``               | chexbert | FactS F_beta with a local instruction model (vLLM, ``facts_model``)   |
| ``chexbert_example_f1``     | chexbert | DEER's diagnostic reward: PromptMRG's example-based F1 over the 14    |
|                             |          | CheXbert labels, positive = class 1 only (``label == 1``)             |

Add one with ``@register_component("name", needs=("chexbert",))`` on ``fn(pair: PairData, cfg) -> float | Invalid``
in a module imported before the reward manager is built (e.g. listed in ``VERL_USE_EXTERNAL_MODULES``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np

from verl_ext.metrics.bleu import bleu
from verl_ext.metrics.chexbert import binarize, inverse_frequency_reward, sample_micro_f1
from verl_ext.metrics.radgraph import radgraph_f1

NEEDS = ("rate", "radgraph", "chexbert")


@dataclass(frozen=True)
class Invalid:
    reason: str


class ComponentConfigError(ValueError):
    """A component is misconfigured: raised through the scorer (it concerns every pair, not one sample's input)."""


@dataclass
class PairData:
    """What a component sees for one (response, reference) pair; fields of analyses it did not ask for are None."""

    response: str
    reference: str
    rate_response: Any = None
    rate_reference: Any = None
    radgraph_response: Optional[dict] = None
    radgraph_reference: Optional[dict] = None
    chexbert_response: Optional[np.ndarray] = None  # binary [14]
    chexbert_reference: Optional[np.ndarray] = None
    chexbert_response_classes: Optional[np.ndarray] = None  # raw CheXbert classes [14] (0 blank 1 pos 2 neg 3 unc)
    chexbert_reference_classes: Optional[np.ndarray] = None
    rate_analyzer: Any = None  # RateAnalyzer (for ratescore's matrix and compute)
    context: Optional[dict] = None  # per-batch shared state (e.g. loaded class frequencies)


ComponentFn = Callable[[PairData, Any], Union[float, Invalid]]


@dataclass(frozen=True)
class Component:
    name: str
    needs: frozenset
    fn: ComponentFn


REGISTRY: dict[str, Component] = {}


def register_component(name: str, needs: tuple[str, ...] = ()) -> Callable[[ComponentFn], ComponentFn]:
    bad = set(needs) - set(NEEDS)
    if bad:
        raise ValueError(f"component {name!r}: unknown needs {sorted(bad)}; choose from {NEEDS}")

    def deco(fn: ComponentFn) -> ComponentFn:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"reward component {name!r} is already registered")
        REGISTRY[name] = Component(name, frozenset(needs), fn)
        return fn

    return deco


def get_component(name: str) -> Component:
    if name not in REGISTRY:
        raise ValueError(f"unknown reward component {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


@register_component("radgraph_f1", needs=("radgraph",))
def _radgraph_f1(p: PairData, cfg) -> float:
    return radgraph_f1(p.radgraph_response, p.radgraph_reference, cfg.radgraph_level, cfg.radgraph_lowercase)


@register_component("chexbert_micro_f1_14", needs=("chexbert",))
def _chexbert_micro_f1_14(p: PairData, cfg) -> float:
    return sample_micro_f1(p.chexbert_response, p.chexbert_reference)


@register_component("ratescore", needs=("rate",))
def _ratescore(p: PairData, cfg) -> Union[float, Invalid]:
    if not p.rate_reference.entities:
        return Invalid("reference_without_rate_entities")
    if not p.rate_response.entities:
        return float(cfg.ratescore_no_entity)
    return p.rate_analyzer.ratescore(p.rate_response, p.rate_reference)


def load_class_frequencies(path: str) -> dict[str, float]:
    with open(path) as f:
        data = json.load(f)
    return dict(data.get("frequencies", data))


@register_component("chexbert_inverse_frequency", needs=("chexbert",))
def _chexbert_inverse_frequency(p: PairData, cfg) -> float:
    ctx = p.context if p.context is not None else {}
    freqs = ctx.get("class_frequencies")
    if freqs is None:
        if not cfg.class_frequencies:
            raise ComponentConfigError(
                "the chexbert_inverse_frequency component needs class_frequencies (a JSON written by "
                "python -m verl_ext.reward.class_frequencies)"
            )
        freqs = ctx["class_frequencies"] = load_class_frequencies(cfg.class_frequencies)
    return inverse_frequency_reward(p.chexbert_response, p.chexbert_reference, freqs)


@register_component("bleu2")
def _bleu(p: PairData, cfg) -> float:
    return bleu(p.response, p.reference, n=cfg.bleu_n)


@register_component("chexbert_example_f1", needs=("chexbert",))
def _chexbert_example_f1(p: PairData, cfg) -> float:
    """DEER Eq. 1's F1 (Sec. 4: "the setting of PromptMRG ... sample-wise F1"): ``tp / (tp + (fp + fn) / 2)`` over
    the 14 labels with positive = CheXbert class 1, 0 when neither report has a positive (PromptMRG's
    ``nan_to_num``), whatever ``chexbert_uncertain`` says."""
    return sample_micro_f1(binarize(p.chexbert_response_classes, "negative"),
                           binarize(p.chexbert_reference_classes, "negative"))
# FactS (OraPO): registered from its own module (imports this one, hence last).
from verl_ext.reward import facts as _facts  # noqa: E402,F401
