"""FactS reward components (OraPO, arXiv 2509.18600; math and prompts in ``verl_ext.metrics.facts``).

Two offline backends, registered in the reward-component registry (``reward.reward_kwargs.components``):

| name          | needs          | facts of the generated report                  | checked against               |
|---------------|----------------|------------------------------------------------|-------------------------------|
| ``facts``     | rate, chexbert | RaTE-NER entities per sentence, mapped to      | the reference's 14 CheXbert   |
|               |                | CheXpert conditions by the CXR lexicon;        | labels (exact label lookup)   |
|               |                | presence from the entity type                  |                               |
| ``facts_radgraph`` | radgraph, | RadGraph observations (with their modifiers),  | the same labels               |
|               | chexbert       | mapped the same way; presence from the label   |                               |
| ``facts_llm`` | chexbert       | a local instruction model (vLLM) lists the     | the same labels, judged by    |
|               |                | atomic facts                                   | the same model                |

How they differ from the paper (GPT-4.1 extracting facts and checking entailment against the 14 labels):
``facts_llm`` runs the paper's two steps with a local model and this project's prompts, so its quality depends on
that model; ``facts`` replaces both LLM steps by the project's own analyzers: a fact is an entity the lexicon can map
to one of the 14 conditions (other entities are neutral, anatomy is no fact), and entailment is exact agreement of
the fact's presence with the reference label, so paraphrase, severity and location are invisible to it. Both take
the reference's labels from CheXbert (uncertain counted as present, ``chexbert_uncertain``), not from CheXpert's
rule-based labeler, and both use ``facts_beta`` (default 2, reconstructed; the paper says only beta > 1).

A pair whose reference has no present condition cannot be scored on recall, and an ``facts_llm`` completion that
cannot be parsed cannot be scored at all: both are ``Invalid`` (counted with their reason, never a silent 0).
"""
from __future__ import annotations

from typing import Union

from verl_ext.metrics.facts import analyzer_facts, entity_facts, facts_score, radgraph_entities
from verl_ext.reward.components import Invalid, PairData, register_component


@register_component("facts", needs=("rate", "chexbert"))
def _facts(p: PairData, cfg) -> Union[float, Invalid]:
    facts = analyzer_facts(p.rate_response, p.chexbert_reference)
    result = facts_score(facts, p.chexbert_reference, cfg.facts_beta, cfg.facts_neutral_as_fp)
    return Invalid("reference_without_present_labels") if result.f_beta is None else result.f_beta


@register_component("facts_radgraph", needs=("radgraph", "chexbert"))
def _facts_radgraph(p: PairData, cfg) -> Union[float, Invalid]:
    facts = entity_facts([radgraph_entities(p.radgraph_response)], p.chexbert_reference)
    result = facts_score(facts, p.chexbert_reference, cfg.facts_beta, cfg.facts_neutral_as_fp)
    return Invalid("reference_without_present_labels") if result.f_beta is None else result.f_beta


@register_component("facts_llm", needs=("chexbert",))
def _facts_llm(p: PairData, cfg) -> Union[float, Invalid]:
    ctx = p.context if p.context is not None else {}
    scorer = ctx.get("facts_llm")
    if scorer is None:
        from verl_ext.clinical.facts import FactsLLMScorer

        if not cfg.facts_model:
            raise ValueError("the facts_llm reward component needs facts_model (a local instruction-model directory)")
        scorer = ctx["facts_llm"] = FactsLLMScorer(cfg.facts_model, beta=cfg.facts_beta,
                                                   neutral_as_fp=cfg.facts_neutral_as_fp)
    result = scorer.score([p.response], [p.chexbert_reference])[0]
    if result is None:
        return Invalid("facts_llm_unparseable")
    return Invalid("reference_without_present_labels") if result.f_beta is None else result.f_beta
