"""service="auto" inside Ray: reward-loop workers share one node actor (its scoring job); scores equal the local ones.

The Ray test starts a local cluster with two reward-loop worker actors and the node actor (each imports verl and
torch): about 45 s on 2 idle cores, 2+ minutes on busy ones (``-m "not slow"`` or VERL_EXT_RAY_TESTS=0 skips it).
The in-process test covers the actor body on every run.
"""

import asyncio
import os

import pytest


def test_scoring_job_in_the_node_actor_body_in_process(scorer_paths, fresh_services):
    from verl_ext.node_actor import NodeActor
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest
    from verl_ext.reward.service import SCORING_JOB, get_service

    cfg = RadiologyRewardConfig.from_any({"models": scorer_paths.as_dict(), "device": "cpu"})
    actor = NodeActor(torch_threads=1)  # what ray.remote(NodeActor) runs; jobs get the config dict they are sent
    reqs = [
        ScoreRequest("mild cardiomegaly.", "mild cardiomegaly. bibasilar atelectasis."),
        ScoreRequest("", "lungs are clear."),
    ]

    async def main():
        outs = await asyncio.gather(*[actor.run(SCORING_JOB, cfg.to_dict(), "score", r) for r in reqs])
        return outs, await actor.run(SCORING_JOB, cfg.to_dict(), "stats")

    outs, stats = asyncio.new_event_loop().run_until_complete(main())
    assert stats["batch_sizes"] == [2]  # concurrent requests were micro-batched inside the job
    assert actor.stats()["jobs"] == [SCORING_JOB]  # built once for the two calls
    assert outs == RewardScorer(cfg).score_batch(reqs)
    assert (
        type(get_service(RadiologyRewardConfig.from_any(cfg.to_dict(), {"service": "auto"}))).__name__
        == "LocalScoringService"
    )


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VERL_EXT_RAY_TESTS") == "0", reason="VERL_EXT_RAY_TESTS=0")
def test_reward_workers_share_the_node_actor(make_config, make_item, tokenizer, scorer_paths, fresh_services):
    import ray
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from verl_ext.node_actor import ACTOR_NAME_PREFIX
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest

    pairs = [
        ("the heart is enlarged. small left pleural effusion.", "heart size is normal. no pleural effusion."),
        ("mild cardiomegaly.", "mild cardiomegaly. bibasilar atelectasis."),
        ("", "lungs are clear."),
        ("lungs are clear.", "lungs are clear."),
    ]
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="verl_ext_test")
    workers, actors = [], []
    try:
        config = make_config(service="auto")
        Worker = ray.remote(RewardLoopWorker)
        workers = [Worker.options(num_cpus=0.5).remote(config) for _ in range(2)]
        refs = [workers[i % 2].compute_score.remote(make_item(r, ref)) for i, (r, ref) in enumerate(pairs)]
        outs = ray.get(refs, timeout=600)
        actors = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ACTOR_NAME_PREFIX)]
        assert len(actors) == 1  # one node actor, shared by both reward workers
    finally:
        if started:
            ray.shutdown()
        else:  # a cluster another test started: remove only what this test created
            for w in workers:
                ray.kill(w)
            for a in actors:
                ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]))
    cfg = RadiologyRewardConfig.from_any({"models": scorer_paths.as_dict(), "device": "cpu"})
    local = RewardScorer(cfg).score_batch(
        [ScoreRequest(tokenizer.decode(tokenizer(r, add_special_tokens=False)["input_ids"]), ref) for r, ref in pairs]
    )
    assert [o["reward_score"] for o in outs] == pytest.approx([o["reward_score"] for o in local], abs=1e-6)
