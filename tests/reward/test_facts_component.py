"""The FactS reward components in the radiology reward (tiny scorer models; known answers via PairData)."""
import numpy as np
import pytest

from verl_ext.editing import Entity, ReportAnalysis, Sentence
from verl_ext.metrics.chexbert import CONDITIONS
from verl_ext.reward.components import REGISTRY, Invalid, PairData, get_component
from verl_ext.reward.config import RadiologyRewardConfig
from verl_ext.reward.scoring import RewardScorer, ScoreRequest


def _labels(*present):
    return np.array([int(c in present) for c in CONDITIONS])


def test_registered_with_their_needs():
    assert REGISTRY["facts"].needs == frozenset({"rate", "chexbert"})
    assert REGISTRY["facts_llm"].needs == frozenset({"chexbert"})
    assert REGISTRY["facts_radgraph"].needs == frozenset({"radgraph", "chexbert"})


def test_facts_component_known_answer():
    text = "Mild cardiomegaly."
    analysis = ReportAnalysis(text, (Sentence(text, 0, len(text), (Entity("cardiomegaly", "ABNORMALITY"),)),))
    pair = PairData(response=text, reference="ref", rate_response=analysis,
                    chexbert_reference=_labels("Cardiomegaly", "Edema"))
    cfg = RadiologyRewardConfig(components={"facts": 1.0})
    # P = 1, R = 1/2, F2 = 5 * 0.5 / (4 + 0.5)
    assert get_component("facts").fn(pair, cfg) == pytest.approx(2.5 / 4.5)
    pair.chexbert_reference = _labels()
    assert get_component("facts").fn(pair, cfg) == Invalid("reference_without_present_labels")


def test_facts_llm_component_needs_a_model_and_uses_the_scorer():
    cfg = RadiologyRewardConfig(components={"facts_llm": 1.0})
    pair = PairData(response="x", reference="y", chexbert_reference=_labels("Edema"), context={})
    with pytest.raises(ValueError, match="facts_model"):
        get_component("facts_llm").fn(pair, cfg)

    from verl_ext.clinical.facts import FactsLLMScorer

    replies = iter(["- Edema is present.", "1. entailed | Edema"])
    pair.context["facts_llm"] = FactsLLMScorer(generate_fn=lambda prompts: [next(replies) for _ in prompts])
    assert get_component("facts_llm").fn(pair, cfg) == pytest.approx(1.0)
    pair.context["facts_llm"] = FactsLLMScorer(generate_fn=lambda prompts: ["no idea"] * len(prompts))
    assert get_component("facts_llm").fn(pair, cfg) == Invalid("facts_llm_unparseable")


def test_facts_through_the_reward_scorer(scorer_paths):
    cfg = RadiologyRewardConfig.from_any({"models": scorer_paths.as_dict(), "device": "cpu",
                                          "components": {"facts": 1.0, "facts_radgraph": 1.0,
                                                         "chexbert_micro_f1_14": 1.0}})
    pairs = [("the heart is enlarged. small left pleural effusion.", "mild cardiomegaly. small effusion."),
             ("", "lungs are clear.")]
    out = RewardScorer(cfg).score_batch([ScoreRequest(*p) for p in pairs])
    for o in out:
        info = o["reward_extra_info"]
        assert 0.0 <= info["facts"] <= 1.0 and 0.0 <= info["facts_radgraph"] <= 1.0
        assert o["reward_score"] == pytest.approx(info["facts"] + info["facts_radgraph"] + info["chexbert_micro_f1_14"])
        if info["invalid"]:
            assert info["invalid_reason"]  # counted with its reason
    assert out[1]["reward_extra_info"]["facts"] == 0.0  # empty response
