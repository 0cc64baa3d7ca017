"""Weights, optional components, the component registry, configuration, caching."""

import json

import pytest

from verl_ext.reward.components import REGISTRY, Invalid, register_component
from verl_ext.reward.config import PAPER_COMPONENTS, RadiologyRewardConfig
from verl_ext.reward.scoring import RewardScorer, ScoreRequest, extra_info_keys

PAIRS = [
    ("the heart is enlarged. small left pleural effusion.", "heart size is normal. no pleural effusion."),
    ("mild cardiomegaly.", "mild cardiomegaly. bibasilar atelectasis."),
    ("lungs are clear.", "lungs are clear."),
    ("", "lungs are clear."),
]


def cfg(scorer_paths, **kw):
    return RadiologyRewardConfig.from_any({"models": scorer_paths.as_dict(), "device": "cpu"}, kw)


def test_default_is_the_paper_reward():
    c = RadiologyRewardConfig()
    assert c.components == PAPER_COMPONENTS == {"radgraph_f1": 1.0, "chexbert_micro_f1_14": 1.0, "ratescore": 1.0}


def test_config_from_trainer_config_and_overrides(scorer_paths):
    from omegaconf import OmegaConf

    trainer = OmegaConf.create(
        {"reward": {"reward_kwargs": {"models": {"rate_ner": "/x"}, "components": {"bleu2": 1.0}, "device": "cpu"}}}
    )
    c = RadiologyRewardConfig.from_trainer_config(trainer, device="cuda", models={"biolord": "/y"})
    assert c.components == {"bleu2": 1.0} and c.device == "cuda"
    assert c.models.rate_ner == "/x" and c.models.biolord == "/y"
    assert RadiologyRewardConfig.from_trainer_config(OmegaConf.create({"reward": {}})).components == PAPER_COMPONENTS
    with pytest.raises(ValueError, match="unknown keys"):
        RadiologyRewardConfig.from_any({"componets": {}})
    with pytest.raises(ValueError, match="on_invalid"):
        RadiologyRewardConfig(on_invalid="ignore")
    with pytest.raises(ValueError, match="unknown reward component"):
        RewardScorer(RadiologyRewardConfig(components={"nope": 1.0}))


def test_weights_and_optional_components(scorer_paths, tmp_path):
    from verl_ext.metrics.bleu import bleu
    from verl_ext.metrics.chexbert import CONDITIONS

    freqs = tmp_path / "freqs.json"
    freqs.write_text(json.dumps({"frequencies": {c: 0.2 for c in CONDITIONS}}))
    paper = RewardScorer(cfg(scorer_paths)).score_batch([ScoreRequest(*p) for p in PAIRS])
    weighted = RewardScorer(
        cfg(
            scorer_paths,
            components={"radgraph_f1": 2.0, "ratescore": 0.5, "bleu2": 1.0, "chexbert_inverse_frequency": 3.0},
            class_frequencies=str(freqs),
        )
    ).score_batch([ScoreRequest(*p) for p in PAIRS])
    for (resp, ref), p, w in zip(PAIRS, paper, weighted):
        wi, pi = w["reward_extra_info"], p["reward_extra_info"]
        assert wi["radgraph_f1"] == pytest.approx(pi["radgraph_f1"]) and wi["ratescore"] == pytest.approx(
            pi["ratescore"]
        )
        assert wi["bleu2"] == pytest.approx(bleu(resp, ref) if resp else 0.0)
        expected = 2 * wi["radgraph_f1"] + 0.5 * wi["ratescore"] + wi["bleu2"] + 3 * wi["chexbert_inverse_frequency"]
        assert w["reward_score"] == pytest.approx(expected)
        assert 0.0 <= wi["chexbert_inverse_frequency"] <= 0.5
    assert weighted[2]["reward_extra_info"]["bleu2"] == pytest.approx(1.0)
    assert list(weighted[0]["reward_extra_info"]) == extra_info_keys(
        cfg(
            scorer_paths,
            components={"radgraph_f1": 2.0, "ratescore": 0.5, "bleu2": 1.0, "chexbert_inverse_frequency": 3.0},
        )
    )


def test_inverse_frequency_needs_frequencies(scorer_paths):
    s = RewardScorer(cfg(scorer_paths, components={"chexbert_inverse_frequency": 1.0}))
    with pytest.raises(ValueError, match="class_frequencies"):
        s.score_batch([ScoreRequest(*PAIRS[0])])


def test_register_custom_component(scorer_paths):
    @register_component("test_length_ratio")
    def _ratio(p, c):
        if len(p.reference.split()) < 2:
            return Invalid("reference_too_short")
        return min(1.0, len(p.response.split()) / len(p.reference.split()))

    try:
        out = RewardScorer(cfg(scorer_paths, components={"test_length_ratio": 1.0})).score_batch(
            [ScoreRequest("a b", "a b c d"), ScoreRequest("a", "x")]
        )
        assert out[0]["reward_score"] == pytest.approx(0.5)
        assert (
            out[1]["reward_extra_info"]["invalid"] == 1
            and out[1]["reward_extra_info"]["invalid_reason"] == "reference_too_short"
        )
        with pytest.raises(ValueError, match="already registered"):
            register_component("test_length_ratio")(lambda p, c: 0.0)
    finally:
        REGISTRY.pop("test_length_ratio", None)


def test_cached_equals_fresh_and_reference_work_is_reused(scorer_paths):
    s = RewardScorer(cfg(scorer_paths))
    first = s.score_batch([ScoreRequest(*p) for p in PAIRS])
    counters = {k: dict(v) for k, v in s.clinical.stats().items()}
    # the next step: new responses, same references (G samples per prompt, every epoch)
    again = s.score_batch([ScoreRequest(*p) for p in PAIRS])
    assert [a["reward_score"] for a in again] == [f["reward_score"] for f in first]
    stats = s.clinical.stats()
    assert stats["rate"]["ner_sentences"] == counters["rate"]["ner_sentences"]
    assert stats["radgraph"]["forward_passes"] == counters["radgraph"]["forward_passes"]
    assert stats["chexbert"]["forward_passes"] == counters["chexbert"]["forward_passes"]
    fresh = RewardScorer(cfg(scorer_paths)).score_batch([ScoreRequest(*p) for p in reversed(PAIRS)])
    assert [f["reward_score"] for f in reversed(fresh)] == pytest.approx([a["reward_score"] for a in first], abs=1e-6)


def test_reference_without_entities_is_counted(scorer_paths):
    s = RewardScorer(cfg(scorer_paths))
    out = s.score_batch([ScoreRequest("mild cardiomegaly.", "ok"), ScoreRequest("", "ok")])
    for o in out:
        assert o["reward_extra_info"]["invalid"] == 1
        assert o["reward_extra_info"]["invalid_reason"] == "reference_without_rate_entities"
    assert s.counters["invalid"] == 2
