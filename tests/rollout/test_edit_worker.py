"""EditAgentLoopWorker in-process: group assembly for every scheme, with verl's real agent loop and post-processing.

TransferQueue is replaced by an in-memory recorder and the rollout server by a scripted client; everything else is
verl's code (``SingleTurnAgentLoop``, ``AgentLoopWorker._compute_score``, ``AgentLoopWorkerTQ._agent_loop_postprocess``)
and ours. The Ray/TQ/reward-loop path runs in tests/integration.
"""
import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

KEYWORD_ANALYZER = f"{Path(__file__).resolve().parents[1] / 'integration' / '_keyword_analyzer.py'}:KeywordAnalyzer"
REFERENCE = "The heart is enlarged. There is a small left effusion. No pneumothorax."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.fixture
def fake_tq(monkeypatch):
    import transfer_queue

    store = SimpleNamespace(tags=[], puts=[])

    async def async_kv_put(key, partition_id, tag=None, **_):
        store.tags.append((key, partition_id, tag))

    async def async_kv_batch_put(keys, fields, tags, partition_id):
        for i, key in enumerate(keys):
            store.puts.append((key, partition_id, fields[i], tags[i]))

    monkeypatch.setattr(transfer_queue, "init", lambda *a, **k: None)
    monkeypatch.setattr(transfer_queue, "async_kv_put", async_kv_put)
    monkeypatch.setattr(transfer_queue, "async_kv_batch_put", async_kv_batch_put)
    return store


class ScriptedClient:
    """Stands in for verl's LLMServerClient: returns the next scripted text (+ end-of-turn) per request."""

    def __init__(self, tokenizer, texts, eos=True):
        self.tokenizer = tokenizer
        self.texts = itertools.cycle(texts)
        self.eos = eos
        self.requests = 0

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.requests += 1
        ids = self.tokenizer.encode(next(self.texts), add_special_tokens=False)
        if self.eos:
            ids = ids + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=None, stop_reason="completed", extra_fields={"global_steps": 3})


class FakeRewardHandle:
    """A reward-loop worker handle: records what reached the reward and scores 1.0 for edited copies."""

    def __init__(self):
        self.seen = []

        async def remote(data):
            extra = data.non_tensor_batch["tool_extra_fields"][-1]
            self.seen.append(dict(extra))
            return {"reward_score": float(extra.get("is_edited", False)), "reward_extra_info": {"acc": 0.0}}

        self.compute_score = SimpleNamespace(remote=remote)


def _config(model_dir, n=4, response_length=48, **editgrpo):
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={n}",
        "actor_rollout_ref.rollout.prompt_length=128",
        f"actor_rollout_ref.rollout.response_length={response_length}",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    ]
    overrides += [f"+editgrpo.{k}={v}" for k, v in {"analyzer": KEYWORD_ANALYZER, **editgrpo}.items()]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"),
                               version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def _prompt(uid="u1", index=7):
    return {
        "raw_prompt": [{"role": "user", "content": "Describe the findings."}],
        "uid": uid,
        "index": torch.tensor(index),
        "global_steps": 3,
        "reward_model": {"style": "model", "ground_truth": REFERENCE},
        "data_source": "synthetic",
        "extra_info": {"index": index},
        "agent_name": "single_turn_agent",
        "tools_kwargs": {},
        "interaction_kwargs": {},
    }


def _run(worker, prompt, validate=False):
    from verl.utils.ray_utils import get_event_loop

    trajectory = {"step": 3, "sample_index": 0, "rollout_n": 0, "validate": validate}
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}
    get_event_loop().run_until_complete(worker._run_prompt(prompt, params, trajectory))


def _worker(model_dir, texts, reward=None, eos=True, **cfg):
    from verl.utils.tokenizer import hf_tokenizer

    from verl_ext.rollout.edit_worker import EditAgentLoopWorker

    config = _config(model_dir, **cfg)
    client = ScriptedClient(hf_tokenizer(str(model_dir)), texts, eos=eos)
    handles = [reward] if reward is not None else None
    return EditAgentLoopWorker(config, client, None, handles), client


def _by_session(store, uid="u1"):
    out = {}
    for key, partition, fields, tag in store.puts:
        u, session, index = key.split("_")
        assert u == uid and index == "0" and partition == "train" and tag["status"] == "success"
        out[int(session)] = fields
    return out


def _tokens(field):
    return field["responses"].tolist()


GOOD = "The heart is enlarged. There is a small left effusion. No pneumothorax."
NEEDS_EDIT = "The lungs are clear. There is a small left effusion."


def test_paper_scheme_samples_half_and_appends_edits(model_dir, fake_tq):
    worker, client = _worker(model_dir, [NEEDS_EDIT, NEEDS_EDIT])
    _run(worker, _prompt())
    assert client.requests == 2  # G/2 sampled, nothing thrown away
    assert fake_tq.tags[0][2] == {"status": "running"} and fake_tq.tags[-1][2] == {"status": "finished"}
    sessions = _by_session(fake_tq)
    assert sorted(sessions) == [0, 1, 2, 3]
    tok = worker.tokenizer
    for sid in (0, 1):
        extra = sessions[sid]["extra_fields"]
        assert extra["is_edited"] is False and extra["edit_source_session"] == -1
        assert extra["edit_analysis"]["text"] == NEEDS_EDIT  # no reward loop: the analysis stays
    for sid, src in ((2, 0), (3, 1)):
        extra = sessions[sid]["extra_fields"]
        assert extra["is_edited"] is True and extra["edit_source_session"] == src
        assert extra["edit_ops"] and extra["edit_tokens_inserted"] > 0 and extra["edit_time_s"] >= 0
        edited_ids = _tokens(sessions[sid])
        source_ids = _tokens(sessions[src])
        assert edited_ids[-1] == tok.eos_token_id
        for s0, s1, d in extra["edit_kept_runs"]:
            assert edited_ids[d : d + s1 - s0] == source_ids[s0:s1]
        assert sessions[sid]["response_mask"].tolist() == [1] * len(edited_ids)
        text = tok.decode(edited_ids, skip_special_tokens=True)
        assert text != NEEDS_EDIT and extra["edit_analysis"]["text"] == text
        # verl's post-processing ran on the edited copy: sequence, positions, prompt identical to the source
        assert torch.equal(sessions[sid]["prompts"], sessions[src]["prompts"])
        assert sessions[sid]["input_ids"].shape[0] == sessions[sid]["prompts"].shape[0] + len(edited_ids)
        assert sessions[sid]["position_ids"].shape[-1] == sessions[sid]["input_ids"].shape[0]


def test_unchanged_edit_slots_are_resampled_or_duplicated(model_dir, fake_tq):
    worker, client = _worker(model_dir, [GOOD])
    _run(worker, _prompt())
    assert client.requests == 4  # 2 sources + 2 resampled fills (the edits changed nothing)
    sessions = _by_session(fake_tq)
    assert [sessions[s]["extra_fields"]["is_edited"] for s in range(4)] == [False] * 4

    fake_tq.puts.clear()
    worker, client = _worker(model_dir, [GOOD], on_unchanged="duplicate")
    _run(worker, _prompt())
    assert client.requests == 2
    sessions = _by_session(fake_tq)
    assert sessions[2]["extra_fields"]["edit_duplicate"] is True
    assert _tokens(sessions[2]) == _tokens(sessions[0]) and "edit_analysis" not in sessions[2]["extra_fields"]


def test_overwrite_scheme_replaces_half_of_n_samples(model_dir, fake_tq):
    worker, client = _worker(model_dir, [NEEDS_EDIT], scheme="overwrite", n=5)
    _run(worker, _prompt())
    assert client.requests == 5  # n sampled; n//2 of them are overwritten by edits
    sessions = _by_session(fake_tq)
    edited = [s for s in range(5) if sessions[s]["extra_fields"]["is_edited"]]
    assert len(edited) == 2
    sources = {sessions[s]["extra_fields"]["edit_source_session"] for s in edited}
    assert not sources & set(edited)


def test_none_scheme_is_plain_grpo_without_analyzer(model_dir, fake_tq):
    worker, client = _worker(model_dir, [NEEDS_EDIT], scheme="none", analyzer="rate")
    _run(worker, _prompt())
    assert client.requests == 4 and worker._batcher is None
    sessions = _by_session(fake_tq)
    assert all(not sessions[s]["extra_fields"]["is_edited"] for s in range(4))
    assert all("edit_analysis" not in sessions[s]["extra_fields"] for s in range(4))


def test_paragraph_level_replaces_one_response_with_the_reference(model_dir, fake_tq):
    worker, client = _worker(model_dir, [NEEDS_EDIT], level="paragraph", analyzer="rate")
    _run(worker, _prompt())
    assert client.requests == 3  # G - 1 sampled, 1 paragraph edit
    sessions = _by_session(fake_tq)
    extra = sessions[3]["extra_fields"]
    assert extra["is_edited"] and extra["edit_ops"] == ["paragraph_replace"] and extra["edit_tokens_kept"] == 0
    assert worker.tokenizer.decode(_tokens(sessions[3]), skip_special_tokens=True) == REFERENCE


def test_reward_sees_the_analysis_and_it_is_dropped_after_scoring(model_dir, fake_tq):
    reward = FakeRewardHandle()
    worker, _ = _worker(model_dir, [NEEDS_EDIT], reward=reward)
    _run(worker, _prompt())
    assert len(reward.seen) == 4
    assert all("edit_analysis" in extra for extra in reward.seen)
    sessions = _by_session(fake_tq)
    for sid in range(4):
        extra = sessions[sid]["extra_fields"]
        assert "edit_analysis" not in extra
        score = sessions[sid]["rm_scores"]
        assert float(score[-1]) == float(extra["is_edited"])  # verl's rm_scores: the score on the last token


def test_edits_that_overflow_the_response_length_are_dropped(model_dir, fake_tq):
    # The sampled response fills the whole budget without an end-of-turn token: nothing can be appended.
    worker, client = _worker(model_dir, ["The lungs are clear. " * 20], eos=False, response_length=12)
    _run(worker, _prompt())
    sessions = _by_session(fake_tq)
    assert client.requests == 4
    assert all(len(_tokens(sessions[s])) <= 12 for s in range(4))
    assert not any(sessions[s]["extra_fields"]["is_edited"] for s in range(4))


def test_edit_errors_are_counted_and_the_group_still_trains(model_dir, fake_tq):
    worker, client = _worker(model_dir, [NEEDS_EDIT])
    prompt = _prompt()
    prompt["reward_model"] = {"style": "model"}  # no ground truth
    _run(worker, prompt)
    assert fake_tq.tags[-1][2] == {"status": "finished"}
    sessions = _by_session(fake_tq)
    assert "no reference report" in sessions[0]["extra_fields"]["edit_error"]
    assert client.requests == 4


def test_validation_is_plain_sampling(model_dir, fake_tq):
    worker, client = _worker(model_dir, [NEEDS_EDIT])
    worker.config.actor_rollout_ref.rollout.val_kwargs.n = 2
    _run(worker, _prompt(), validate=True)
    assert client.requests == 2
    assert {p[1] for p in fake_tq.puts} == {"val"}
    assert all("is_edited" not in p[2]["extra_fields"] for p in fake_tq.puts)


def test_group_rng_is_reproducible_and_independent_of_uid(model_dir, fake_tq):
    worker, _ = _worker(model_dir, [NEEDS_EDIT])
    a = worker._group_rng(_prompt(uid="a")).random()
    assert a == worker._group_rng(_prompt(uid="b")).random()
    assert a != worker._group_rng(_prompt(index=8)).random()


def test_manager_rejects_rollout_log_probs_with_edits(model_dir):
    from verl_ext.rollout.edit_worker import validate_edit_setup

    config = _config(model_dir)
    assert validate_edit_setup(config).scheme == "paper"
    config.actor_rollout_ref.rollout.calculate_log_probs = True
    with pytest.raises(ValueError, match="calculate_log_probs=False"):
        validate_edit_setup(config)
    config = _config(model_dir, scheme="none")
    config.actor_rollout_ref.rollout.calculate_log_probs = True
    assert validate_edit_setup(config).scheme == "none"


# ------------------------------------------------------------------------------------------------ bad input


ANALYZERS = f"{Path(__file__).resolve().parent / '_analyzers.py'}"


def _sessions(store, uid):
    return {int(key.split("_")[1]): fields for key, partition, fields, tag in store.puts if key.split("_")[0] == uid}


def test_truncated_source_gets_no_edit(model_dir, fake_tq):
    # The response ran into response_length without an end-of-turn token: it ends mid-word. Editing it (here: append
    # the missing cardiomegaly) would put <|im_end|> after a fragment, so the source is not edited; its slot is
    # resampled like an unchanged edit and the skip is recorded on the source.
    fragment = "The lungs are clear. There is a small left effusion. The heart is enla"
    worker, client = _worker(model_dir, [fragment], eos=False, response_length=64)
    _run(worker, _prompt())
    sessions = _by_session(fake_tq)
    assert client.requests == 4 and fake_tq.tags[-1][2] == {"status": "finished"}
    assert not any(sessions[s]["extra_fields"]["is_edited"] for s in range(4))
    assert sessions[0]["extra_fields"]["edit_skipped"] == "truncated"
    assert worker.pop_edit_tally() == {3: [1, 0, 1]}  # a skip is not a failure, but it is counted
    # with an end-of-turn token the same text is edited
    fake_tq.puts.clear()
    worker, client = _worker(model_dir, [fragment], eos=True, response_length=64)
    _run(worker, _prompt())
    assert _by_session(fake_tq)[2]["extra_fields"]["is_edited"]


def test_one_bad_text_fails_only_its_own_group(model_dir, fake_tq):
    # Two groups' texts are analysed in one batched call; group b's reference makes the analyzer raise. Group a keeps
    # its edits, group b alone records the error (and trains on plain samples).
    worker, _ = _worker(model_dir, [NEEDS_EDIT], analyzer=f"{ANALYZERS}:PoisonAnalyzer")
    bad = _prompt(uid="b", index=8)
    bad["reward_model"] = {"style": "model", "ground_truth": "POISON. The heart is enlarged."}
    _run_many(worker, [_prompt(uid="a"), bad])
    analyzer = worker._get_batcher()._analyzer
    assert any("POISON. The heart is enlarged." in b and REFERENCE in b for b in type(analyzer).batches)
    good, poisoned = _sessions(fake_tq, "a"), _sessions(fake_tq, "b")
    assert [good[s]["extra_fields"]["is_edited"] for s in range(4)] == [False, False, True, True]
    assert "edit_error" not in good[0]["extra_fields"]
    assert "POISON" in poisoned[0]["extra_fields"]["edit_error"]
    assert not any(poisoned[s]["extra_fields"]["is_edited"] for s in range(4))
    assert {tag["status"] for key, _, tag in fake_tq.tags if key in ("a", "b")} >= {"finished"}
    assert [t for t in fake_tq.tags if t[2]["status"] == "failure"] == []


def test_analysis_must_round_trip_the_text(model_dir, fake_tq):
    # A custom analyzer that collapses whitespace returns analyses of another text: its spans would misalign the kept
    # token runs, so the edit is refused with a clear error (the sampled responses still train).
    worker, client = _worker(model_dir, ["The lungs are clear.\n\nThere is a small left effusion."],
                             analyzer=f"{ANALYZERS}:NormalisingAnalyzer")
    _run(worker, _prompt())
    sessions = _by_session(fake_tq)
    assert fake_tq.tags[-1][2] == {"status": "finished"} and client.requests == 4
    assert "does not match the text it was given" in sessions[0]["extra_fields"]["edit_error"]
    assert not any(sessions[s]["extra_fields"]["is_edited"] for s in range(4))


def test_errors_after_the_analysis_keep_the_sampled_responses(model_dir, fake_tq, monkeypatch):
    import verl_ext.rollout.edit_worker as ew

    def broken_splice(*args, **kwargs):
        raise RuntimeError("splice exploded")

    monkeypatch.setattr(ew, "splice_pieces", broken_splice)
    worker, client = _worker(model_dir, [NEEDS_EDIT])
    _run(worker, _prompt())
    sessions = _by_session(fake_tq)
    assert fake_tq.tags[-1][2] == {"status": "finished"} and sorted(sessions) == [0, 1, 2, 3]
    assert client.requests == 4  # the lost edits' slots were resampled
    assert "splice exploded" in sessions[0]["extra_fields"]["edit_error"]
    assert worker.pop_edit_tally() == {3: [1, 1, 0]}


def test_resampling_failure_keeps_the_group(model_dir, fake_tq):
    worker, client = _worker(model_dir, [GOOD])  # unchanged edits -> resample
    real = client.generate

    async def failing_after_two(request_id, **kwargs):
        if client.requests >= 2:
            raise ConnectionError("rollout server went away")
        return await real(request_id, **kwargs)

    client.generate = failing_after_two
    _run(worker, _prompt())
    sessions = _by_session(fake_tq)
    assert fake_tq.tags[-1][2] == {"status": "finished"} and sorted(sessions) == [0, 1, 2, 3]
    assert sessions[2]["extra_fields"]["edit_duplicate"] is True and _tokens(sessions[2]) == _tokens(sessions[0])
    assert "rollout server went away" in sessions[2]["extra_fields"]["edit_error"]


def test_finalisation_failure_of_an_edited_copy_keeps_the_group(model_dir, fake_tq, monkeypatch):
    import verl_ext.rollout.edit_worker as ew

    real = ew._TQ_WORKER._agent_loop_postprocess

    async def postprocess(self, output, validate, **kwargs):
        if output.extra_fields.get("is_edited"):
            raise ValueError("cannot post-process the edited copy")
        return await real(self, output, validate, **kwargs)

    monkeypatch.setattr(ew._TQ_WORKER, "_agent_loop_postprocess", postprocess)
    worker, client = _worker(model_dir, [NEEDS_EDIT])
    _run(worker, _prompt())
    sessions = _by_session(fake_tq)
    assert fake_tq.tags[-1][2] == {"status": "finished"} and sorted(sessions) == [0, 1, 2, 3]
    for sid, src in ((2, 0), (3, 1)):
        extra = sessions[sid]["extra_fields"]
        assert extra["is_edited"] is False and extra["edit_duplicate"] is True
        assert "cannot post-process" in extra["edit_error"] and _tokens(sessions[sid]) == _tokens(sessions[src])
    assert worker.pop_edit_tally() == {3: [1, 1, 0]}


def test_failure_share_stops_the_run(model_dir, fake_tq):
    from verl_ext.rollout.config import EditRolloutConfig
    from verl_ext.rollout.edit_worker import EditAgentLoopManagerTQ, check_edit_failures

    # Both groups' references make the analyzer raise (a bad model path now fails at start, before any step).
    worker, _ = _worker(model_dir, [NEEDS_EDIT], analyzer=f"{ANALYZERS}:PoisonAnalyzer")
    prompts = [_prompt(uid="a"), _prompt(uid="b", index=8)]
    for p in prompts:
        p["reward_model"] = {"style": "model", "ground_truth": "POISON. The heart is enlarged."}
    _run_many(worker, prompts)
    assert "POISON" in _sessions(fake_tq, "a")[0]["extra_fields"]["edit_error"]
    tally = worker.pop_edit_tally()
    assert tally == {3: [2, 2, 0]} and worker.pop_edit_tally() == {}
    with pytest.raises(RuntimeError, match=r"2 of 2 groups .* editgrpo.max_failed_edit_share=0.1"):
        check_edit_failures(tally, EditRolloutConfig())
    check_edit_failures({3: [10, 1, 0]}, EditRolloutConfig())  # 10 % is not more than 10 %
    check_edit_failures(tally, EditRolloutConfig(stop_on_edit_failures=False))  # logged, training goes on

    # the manager sums the workers' tallies before dispatching the next step
    class Remote:
        def __init__(self, tally):
            self.pop_edit_tally = SimpleNamespace(remote=lambda: tally)

    manager = object.__new__(EditAgentLoopManagerTQ)
    manager.edit_cfg = EditRolloutConfig()
    manager.agent_loop_workers = [Remote({4: [8, 0, 0]}), Remote({4: [8, 1, 0]})]
    manager._check_edit_failures(get=lambda refs: refs)  # 1 of 16 groups of step 4: 6 % <= 10 %
    manager.edit_cfg = EditRolloutConfig(max_failed_edit_share=0.05)
    manager.agent_loop_workers = [Remote({5: [8, 0, 0]}), Remote({5: [8, 1, 0]})]
    with pytest.raises(RuntimeError, match="step 5"):
        manager._check_edit_failures(get=lambda refs: refs)


def _run_many(worker, prompts):
    import asyncio

    from verl.utils.ray_utils import get_event_loop

    trajectory = {"step": 3, "sample_index": 0, "rollout_n": 0, "validate": False}
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}

    async def main():
        await asyncio.gather(*(worker._run_prompt(p, params, dict(trajectory)) for p in prompts))

    get_event_loop().run_until_complete(main())


def test_groups_left_unedited_by_missing_end_of_turn_tokens_stop_the_run(model_dir, fake_tq, caplog):
    """A backend that drops the end-of-turn token makes every source look truncated: no group gets an edit and the run
    would train as Dr. GRPO. Past editgrpo.max_truncated_share of a step's groups that stops the run with the cause."""
    from verl_ext.rollout.config import EditRolloutConfig
    from verl_ext.rollout.edit_worker import EditAgentLoopManagerTQ, check_edit_failures

    worker, _ = _worker(model_dir, [NEEDS_EDIT], eos=False)  # complete reports, but no <|im_end|> in the ids
    _run_many(worker, [_prompt(uid="a"), _prompt(uid="b", index=8)])
    assert not any(s["extra_fields"]["is_edited"] for uid in "ab" for s in _sessions(fake_tq, uid).values())
    tally = worker.pop_edit_tally()
    assert tally == {3: [2, 0, 2]}
    with pytest.raises(RuntimeError, match=r"in 2 of 2 groups of step 3 \(100%\) every edit source ended without an "
                                           r"end-of-turn token.*editgrpo.max_truncated_share=0.5"):
        check_edit_failures(tally, EditRolloutConfig())
    check_edit_failures({3: [10, 0, 5]}, EditRolloutConfig())  # half is not "most"
    with caplog.at_level("WARNING", logger="verl_ext.rollout.edit_worker"):
        check_edit_failures({3: [10, 0, 6]}, EditRolloutConfig(max_truncated_share=0.8))  # most: warned, not stopped
    assert "6 of 10 groups" in caplog.text and "drops the end-of-turn token" in caplog.text
    check_edit_failures(tally, EditRolloutConfig(stop_on_edit_failures=False))
    with pytest.raises(ValueError, match="max_truncated_share"):
        EditRolloutConfig(max_truncated_share=1.5)

    class Remote:
        def __init__(self, tally):
            self.pop_edit_tally = SimpleNamespace(remote=lambda: tally)

    manager = object.__new__(EditAgentLoopManagerTQ)
    manager.edit_cfg = EditRolloutConfig(max_truncated_share=0.25)
    manager.agent_loop_workers = [Remote({6: [8, 0, 1]}), Remote({6: [8, 0, 4]})]  # 5 of 16 > 25 %
    with pytest.raises(RuntimeError, match="5 of 16 groups of step 6"):
        manager._check_edit_failures(get=lambda refs: refs)
