"""Model placement: no model touches a GPU that Ray did not assign to its process (verl_ext.node_actor).

The Ray test starts a local cluster that *declares* two GPUs (Ray assigns GPU ids and sets CUDA_VISIBLE_DEVICES on
a machine without any, which is how its scheduling is tested here), builds a placement group laid out like verl's
colocated pool (``RayResourcePool``: one {"CPU", "GPU": 1} bundle per GPU, named ``global_poolverl_group_...``)
with a stand-in worker holding 1/3 of each bundle, and checks where the node actor lands, that impossible requests
fail at once or after the start timeout instead of hanging, and that calls time out with a clear error.
"""
import os

import pytest

from verl_ext.clinical import models


def test_no_ray_gpu_means_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(models, "ray_gpu_ids", lambda: [])
    assert models.resolve_device("auto") == torch.device("cpu")
    assert models.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="Ray assigned no GPU"):
        models.resolve_device("cuda")
    with pytest.raises(RuntimeError, match="actor_num_gpus"):
        models.resolve_device("cuda:1")


def test_assigned_gpu_is_the_only_one(monkeypatch):
    import torch

    monkeypatch.setattr(models, "ray_gpu_ids", lambda: ["3"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", raising=False)
    assert models.resolve_device("auto") == torch.device("cuda", 0)  # Ray narrowed CUDA_VISIBLE_DEVICES to "3"
    with pytest.raises(RuntimeError, match="may use cuda:\\[0\\] only"):
        models.resolve_device("cuda:1")
    monkeypatch.setenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "1")  # all GPUs visible: physical index
    assert models.resolve_device("cuda") == torch.device("cuda", 3)


def test_outside_ray_unchanged(monkeypatch):
    import torch

    monkeypatch.setattr(models, "ray_gpu_ids", lambda: None)
    assert models.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert models.resolve_device("auto") == torch.device("cpu")


def test_placement_config_is_validated():
    from verl_ext.reward.config import RadiologyRewardConfig

    with pytest.raises(ValueError, match="actor_placement"):
        RadiologyRewardConfig(actor_placement="gpu")
    with pytest.raises(ValueError, match="fraction"):
        RadiologyRewardConfig(actor_placement="pool", actor_num_gpus=1.0)
    with pytest.raises(ValueError, match="unknown keys.*actor_share_gpus"):
        RadiologyRewardConfig.from_any({"actor_share_gpus": True})


@pytest.fixture(scope="module")
def fake_gpu_cluster():
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray cluster is already running in this process")
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False, namespace="verl_ext_placement",
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    from ray.util import placement_group

    pg = placement_group([{"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1}], name="global_poolverl_group_2:0")
    ray.get(pg.ready(), timeout=60)

    @ray.remote(num_cpus=0.25, num_gpus=1 / 3)
    class TrainingWorker:  # stands in for verl's actor/rollout worker (1 / max_colocate_count of a bundle)
        def gpu(self):
            return ray.get_runtime_context().get_accelerator_ids()["GPU"]

    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    workers = [TrainingWorker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
               for i in range(2)]
    ray.get([w.gpu.remote() for w in workers], timeout=60)
    yield ray
    ray.shutdown()


def _in_worker(ray, fn, *args):
    """Run ``fn(*args)`` in a Ray worker process (as the reward / agent-loop workers do)."""
    return ray.get(ray.remote(num_cpus=0.25)(fn).remote(*args), timeout=180)


def _helpers():
    """Nested, so that Ray pickles them by value (this test module is not importable in the workers)."""

    def _create(cfg_dict):
        import ray

        from verl_ext.node_actor import get_or_create
        from verl_ext.reward.config import RadiologyRewardConfig

        handle = get_or_create(RadiologyRewardConfig.from_any(cfg_dict).node_actor())
        info = ray.get(handle.ready.remote())
        ray.kill(handle)
        return info


    def _error(cfg_dict):
        try:
            _create(cfg_dict)
        except Exception as exc:  # noqa: BLE001 - the message is what the test checks
            return f"{type(exc).__name__}: {exc}"
        return None

    return _create, _error


@pytest.mark.slow
def test_node_actor_placement_on_a_fake_gpu_node(fake_gpu_cluster):
    from verl_ext.node_actor import ACTOR_NAME_PREFIX

    ray = fake_gpu_cluster
    _create, _error = _helpers()
    # auto: verl's pool has GPU bundles on this node -> a 0.2 share of a bundle's GPU, which Ray accounts for
    info = _in_worker(ray, _create, {"device": "auto"})
    assert info["gpu_ids"] in (["0"], ["1"]) and info["cuda_visible_devices"] == info["gpu_ids"][0]
    assert info["device"] == "cpu"  # no CUDA on this machine: the assigned (declared) GPU cannot be used
    # node placement without GPUs: CPU, and CUDA hidden from the models
    info = _in_worker(ray, _create, {"actor_placement": "node", "actor_num_cpus": 1, "actor_cpu_threads": 2})
    assert info["gpu_ids"] == [] and info["cuda_visible_devices"] == "" and info["device"] == "cpu"
    assert info["torch_threads"] == 2
    # a GPU outside the pool while the pool holds both: fails at once, naming the setting
    err = _in_worker(ray, _error, {"actor_placement": "node", "actor_num_gpus": 0.5})
    assert err and "could never be scheduled" in err and "actor_placement=pool" in err
    # more of a bundle's GPU than verl's workers leave: fails after the start timeout instead of pending forever
    err = _in_worker(ray, _error, {"actor_placement": "pool", "actor_num_gpus": 0.9, "actor_start_timeout_s": 5})
    assert err and "was not scheduled within 5 s" in err
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ACTOR_NAME_PREFIX)]


@pytest.mark.slow
def test_actor_calls_time_out_with_a_clear_error(fake_gpu_cluster):
    ray = fake_gpu_cluster
    from verl_ext.node_actor import call_actor

    @ray.remote(num_cpus=0.25)
    def slow():
        import time

        time.sleep(30)

    with pytest.raises(TimeoutError, match="scoring a response took longer than 1 s.*actor_call_timeout_s"):
        call_actor(slow.remote(), 1, "scoring a response")


def _share_helpers():
    def analyze_in_worker(models: dict, texts: list):
        """An agent-loop worker's start-up and one analysis batch, then one reward request, through the node actor."""
        import asyncio

        import ray
        from omegaconf import OmegaConf

        from verl_ext.node_actor import ACTOR_NAME_PREFIX, get_or_create
        from verl_ext.reward.config import RadiologyRewardConfig
        from verl_ext.reward.scoring import ScoreRequest
        from verl_ext.reward.service import ActorScoringService
        from verl_ext.rollout.analysis import RemoteAnalyzer, prepare_analyzer
        from verl_ext.rollout.config import EditRolloutConfig

        trainer_cfg = OmegaConf.create({"reward": {"reward_manager": {"name": "radiology"},
                                                   "reward_kwargs": {"models": models,
                                                                     "components": {"ratescore": 1.0}}}})
        edit_cfg = EditRolloutConfig(analyzer="rate", models={"rate_ner": models["rate_ner"],
                                                              "biolord": models["biolord"]})
        analyzer = prepare_analyzer(edit_cfg, trainer_cfg)
        assert isinstance(analyzer, RemoteAnalyzer)
        analyses = analyzer.analyze(texts)
        reward = ActorScoringService(RadiologyRewardConfig.from_trainer_config(trainer_cfg))
        reward.start()
        score = asyncio.new_event_loop().run_until_complete(reward.score(ScoreRequest(texts[0], texts[1])))
        handle = get_or_create(RadiologyRewardConfig.from_trainer_config(trainer_cfg).node_actor())
        stats = ray.get(handle.stats.remote())
        n_actors = len([a for a in ray.util.list_named_actors(all_namespaces=True)
                        if a["name"].startswith(ACTOR_NAME_PREFIX)])
        return [len(a.sentences) for a in analyses], score["reward_score"], stats, n_actors

    return analyze_in_worker


@pytest.mark.slow
def test_analyzer_and_reward_share_one_node_actor_and_one_rate_model(fake_gpu_cluster):
    from verl_ext.reward.service import SCORING_JOB
    from verl_ext.rollout.analysis import ANALYZER_JOB
    from verl_ext.testing.scorer_models import shared_models

    ray = fake_gpu_cluster
    analyze_in_worker = _share_helpers()
    models = {k: v for k, v in shared_models().as_dict().items()}
    texts = ["Mild cardiomegaly. Small left pleural effusion.", "Heart size is normal. No pleural effusion."]
    first = ray.get(ray.remote(num_cpus=0.25)(analyze_in_worker).remote(models, texts), timeout=300)
    assert first[0] == [2, 2]
    # one actor on the node, one RaTE-NER and one BioLORD load serving the analyzer and the reward
    # (the actor lives as long as the worker that created it: in training, a reward or agent-loop worker)
    assert first[3] == 1
    assert first[2]["model_loads"].get("rate_ner") == 1 and first[2]["model_loads"].get("biolord") == 1
    assert first[2]["jobs"] == sorted([ANALYZER_JOB, SCORING_JOB])
