"""The radiology reward manager inside verl 0.9.1's reward loop (RewardLoopWorker, DataProto as verl builds it)."""

import asyncio
import random

import pytest

REFS = [
    "heart size is normal. no pleural effusion or pneumothorax.",
    "mild cardiomegaly. bibasilar atelectasis.",
    "the lungs are clear. no acute cardiopulmonary process.",
]
RESPONSES = [
    "the heart is enlarged. small left pleural effusion.",
    "mild cardiomegaly.",
    "lungs are clear.",
    "heart size is normal. no pleural effusion or pneumothorax.",
]


@pytest.fixture()
def worker(make_config, fresh_services):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    import verl_ext.reward.manager  # noqa: F401  (registers "radiology"; verl does this through the plugin)

    return RewardLoopWorker(make_config())


def test_registered_and_built_by_verl(worker):
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    from verl_ext.reward.manager import RadiologyRewardManager

    assert get_reward_manager_cls("radiology") is RadiologyRewardManager
    assert isinstance(worker.reward_manager, RadiologyRewardManager)
    assert worker.reward_manager.reward_config.device == "cpu"


def test_reward_loop_scores_each_trajectory(worker, make_item, run):
    from verl import DataProto

    items = [make_item(r, REFS[i % 3]) for i, r in enumerate(RESPONSES)]
    batch = DataProto.concat(items)
    outputs = run(worker.compute_score_batch(batch))  # RewardLoopManager.compute_rm_score's path
    assert len(outputs) == len(RESPONSES)
    keys = list(outputs[0]["reward_extra_info"])
    assert keys == [
        "radgraph_f1",
        "chexbert_micro_f1_14",
        "ratescore",
        "response_rate_entities",
        "invalid",
        "invalid_reason",
        "empty_response",
        "overlong_response",
        "analysis_reused",
        "is_edited",
    ]
    for out in outputs:
        info = out["reward_extra_info"]
        assert list(info) == keys
        assert out["reward_score"] == pytest.approx(
            info["radgraph_f1"] + info["chexbert_micro_f1_14"] + info["ratescore"]
        )
        assert -1e-6 <= out["reward_score"] <= 3.0 + 1e-6 and info["invalid"] == 0
    # a response identical to its reference gets every component's maximum
    assert outputs[3]["reward_score"] == pytest.approx(3.0, abs=1e-5)
    # the concurrent per-trajectory calls were scored as one batch
    svc = worker.reward_manager.service
    assert max(svc.stats()["batch_sizes"]) == len(RESPONSES)
    rm = type(worker.reward_manager).assemble_rm_scores(batch, [o["reward_score"] for o in outputs])
    assert rm.shape == batch.batch["responses"].shape


def test_guards_empty_entity_free_and_invalid(worker, make_item, run):
    outs = run(
        asyncio.gather(
            worker.compute_score(make_item("", REFS[0])),  # empty response
            worker.compute_score(make_item("ok", REFS[0])),  # no RaTE entity (no sentence of 3+ characters)
            worker.compute_score(make_item(RESPONSES[0], "   ")),  # empty reference: invalid, counted
            worker.compute_score(make_item(RESPONSES[0], REFS[0])),
        )
    )
    empty, entity_free, invalid, normal = (o["reward_extra_info"] for o in outs)
    assert outs[0]["reward_score"] == 0.0 and empty["empty_response"] == 1 and empty["invalid"] == 0
    # RaTEScore's 0.5 (reward.reward_kwargs.ratescore_no_entity); the package itself drops "ok" and shifts the batch
    assert entity_free["ratescore"] == 0.5 and entity_free["response_rate_entities"] == 0
    assert invalid["invalid"] == 1 and invalid["invalid_reason"] == "empty_reference" and outs[2]["reward_score"] == 0.0
    assert normal["invalid"] == 0 and outs[3]["reward_score"] > 0


def test_on_invalid_raise(make_config, make_item, run, fresh_services):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from verl_ext.reward.scoring import InvalidSampleError

    worker = RewardLoopWorker(make_config(on_invalid="raise"))
    with pytest.raises(InvalidSampleError, match="empty_reference"):
        run(worker.compute_score(make_item(RESPONSES[0], "")))


def test_every_score_belongs_to_its_pair(worker, make_item, run, scorer_paths):
    """Concurrent, shuffled, with duplicates and an empty response in the batch == each pair scored alone."""
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest

    pairs = [(r, REFS[j]) for r in RESPONSES + ["", "no acute process"] for j in range(3)]
    random.Random(0).shuffle(pairs)
    outs = run(asyncio.gather(*[worker.compute_score(make_item(r, ref)) for r, ref in pairs]))
    tok = worker.input_tokenizer
    cfg = RadiologyRewardConfig.from_any({"models": scorer_paths.as_dict(), "device": "cpu"})
    for (resp, ref), out in zip(pairs, outs):
        decoded = tok.decode(tok(resp, add_special_tokens=False)["input_ids"])
        alone = RewardScorer(cfg).score_batch([ScoreRequest(decoded, ref)])[0]
        assert out["reward_score"] == pytest.approx(alone["reward_score"], abs=1e-5), (resp, ref)


def test_edit_analysis_is_reused(worker, make_item, run, scorer_paths):
    from verl_ext.clinical.rate import RateAnalyzer

    tok = worker.input_tokenizer
    text = tok.decode(tok(RESPONSES[0], add_special_tokens=False)["input_ids"])
    analysis = RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu").analyze([text])[0]
    with_analysis = run(
        worker.compute_score(make_item(RESPONSES[0], REFS[0], {"edit_analysis": analysis, "is_edited": True}))
    )
    info = with_analysis["reward_extra_info"]
    assert info["analysis_reused"] == 1 and info["is_edited"] == 1
    from verl_ext.clinical.rate import rate_units

    rate = worker.reward_manager.service.scorer.clinical.rate
    assert rate.counters["ner_sentences"] == len(rate_units(REFS[0]))  # NER ran on the reference only
    from verl_ext.reward.service import reset_services

    reset_services()
    fresh = run(worker.compute_score(make_item(RESPONSES[0], REFS[0])))
    assert fresh["reward_extra_info"]["analysis_reused"] == 0
    assert with_analysis["reward_score"] == pytest.approx(fresh["reward_score"], abs=1e-6)
    # an analysis of another text is not reused
    other = run(worker.compute_score(make_item(RESPONSES[1], REFS[0], {"edit_analysis": analysis})))
    assert other["reward_extra_info"]["analysis_reused"] == 0
