"""Bad input to the reward: over-long and non-text responses, and one sample's failure never reaching the others."""

import pytest

REF = "mild cardiomegaly. small left pleural effusion. no pneumothorax."
GOOD = ["the heart is enlarged. small left pleural effusion.", "mild cardiomegaly.", "no pneumothorax."]
RUNAWAY = ("there is a small left pleural effusion and the heart is enlarged " * 400).strip()  # ~25,000 chars


@pytest.fixture()
def scorer(scorer_paths):
    from verl_ext.clinical.scorer import ClinicalScorer
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer

    cfg = RadiologyRewardConfig.from_any({"models": scorer_paths.as_dict(), "device": "cpu", "service": "local"})
    return RewardScorer(cfg, ClinicalScorer(cfg.scorer_config()))


def _requests(responses, ref=REF):
    from verl_ext.reward.scoring import ScoreRequest

    return [ScoreRequest(r, ref) for r in responses]


@pytest.mark.slow  # ~40 s on 2 busy cores: the tiny random RadGraph still reads a full 512-wordpiece window
def test_runaway_response_is_capped_counted_and_isolated(scorer):
    assert len(RUNAWAY) > 20_000
    alone = scorer.score_batch(_requests(GOOD))
    annotator = scorer.clinical.radgraph
    seen = []
    real = annotator.rg.reader.text_to_instance

    def spy(doc):
        seen.extend(len(s) for s in doc["sentences"])
        return real(doc)

    annotator.rg.reader.text_to_instance = spy
    out = scorer.score_batch(_requests(GOOD + [RUNAWAY]))
    # every scorer reads at most its model's own window (RadGraph: 512 BERT wordpieces)
    assert seen and max(seen) <= 512
    info = out[-1]["reward_extra_info"]
    assert info["overlong_response"] == 1 and info["invalid"] == 0 and out[-1]["reward_score"] > 0
    assert scorer.counters["overlong_responses"] == 1
    for a, b in zip(alone, out[:-1]):
        assert b["reward_extra_info"]["overlong_response"] == 0
        assert b["reward_score"] == pytest.approx(a["reward_score"], abs=1e-5)


def test_a_failing_sample_does_not_fail_its_batch(scorer, monkeypatch):
    alone = scorer.score_batch(_requests(GOOD))
    annotator = scorer.clinical.radgraph
    real = annotator._annotate_uncached

    def oom_on_boom(texts):
        if any("boom" in t for t in texts):
            raise MemoryError("radgraph ran out of memory")
        return real(texts)

    monkeypatch.setattr(annotator, "_annotate_uncached", oom_on_boom)
    out = scorer.score_batch(_requests(GOOD + ["boom. mild cardiomegaly."]))
    bad = out[-1]["reward_extra_info"]
    assert bad["invalid"] == 1 and "radgraph_error" in bad["invalid_reason"] and bad["radgraph_f1"] == 0.0
    assert bad["chexbert_micro_f1_14"] > 0 or bad["ratescore"] > 0  # the other scorers still scored it
    for a, b in zip(alone, out[:-1]):
        assert b["reward_extra_info"]["invalid"] == 0
        assert b["reward_score"] == pytest.approx(a["reward_score"], abs=1e-5)


def test_a_failing_component_fails_only_its_pair(scorer, monkeypatch):
    from verl_ext.reward import components

    real = components.REGISTRY["ratescore"]

    def flaky(p, cfg):
        if "boom" in p.response:
            raise ValueError("broken pair")
        return real.fn(p, cfg)

    scorer.components = [(n, w, c if n != "ratescore" else components.Component(n, c.needs, flaky))
                         for n, w, c in scorer.components]
    out = scorer.score_batch(_requests(["boom. mild cardiomegaly.", GOOD[1]]))
    assert out[0]["reward_extra_info"]["invalid_reason"] == "ratescore_error"
    assert out[1]["reward_extra_info"]["invalid"] == 0


@pytest.mark.parametrize("response", [None, 3, b"mild cardiomegaly.", ["mild cardiomegaly."]])
def test_non_text_response_is_invalid_with_its_reason(scorer, response):
    (out,) = scorer.score_batch(_requests([response]))
    info = out["reward_extra_info"]
    assert info["invalid"] == 1 and info["invalid_reason"] == "response_not_text"
    assert info["empty_response"] == 0 and out["reward_score"] == 0.0


def test_overlong_response_counted_when_its_analysis_comes_from_the_edit_step(scorer_paths):
    """The edit step's analysis arrives as ``to_dict()``; the reward adopts it and still counts the cut response."""
    from verl_ext.clinical.rate import RateAnalyzer
    from verl_ext.clinical.scorer import ClinicalScorer
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest

    cfg = RadiologyRewardConfig.from_any(
        {"models": scorer_paths.as_dict(), "device": "cpu", "service": "local", "components": {"ratescore": 1.0}}
    )
    scorer = RewardScorer(cfg, ClinicalScorer(cfg.scorer_config()))
    runaway = " ".join(["small left pleural effusion and mild cardiomegaly"] * 120) + "."  # one RaTE-NER unit
    edit_step = RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu")
    handed = [a.to_dict() for a in edit_step.analyze([runaway, GOOD[0]])]
    out = scorer.score_batch([ScoreRequest(runaway, REF, analysis=handed[0], is_edited=True),
                              ScoreRequest(GOOD[0], REF, analysis=handed[1], is_edited=True)])
    long_info, short_info = (o["reward_extra_info"] for o in out)
    assert long_info["analysis_reused"] == 1 and long_info["overlong_response"] == 1 and long_info["invalid"] == 0
    assert short_info["analysis_reused"] == 1 and short_info["overlong_response"] == 0
    assert scorer.counters["overlong_responses"] == 1
