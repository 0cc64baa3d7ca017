"""Run verl 0.9.1's SFT trainer (``verl.trainer.sft_trainer``, FSDP engine, strategy fsdp2) on CPU.

    python -m torch.distributed.run --nproc_per_node 1 _sft_trainer_cpu.py <hydra overrides>

(or one process with RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, as the tests do).

verl has no CPU platform, so out of the box the trainer stops at the first CUDA call. What this shim supplies, each
for the exact failure it fixes (verl 0.9.1 line numbers):

1. ``verl/utils/distributed.py:63`` initialises ``cpu:gloo,cuda:nccl`` ("ProcessGroupNCCL is only supported with
   GPUs") -> a plain gloo process group;
2. ``verl/plugin/platform/platform_manager.py`` falls back to the NVIDIA platform, so ``get_torch_device()`` is
   ``torch.cuda`` (``log_gpu_memory_usage`` -> ``mem_get_info``: "Found no NVIDIA driver"; ``get_device_id()`` -> 0,
   a CUDA device index) -> a CPU platform (``device_name="cpu"``, ``current_device() == "cpu"``, gloo, memory
   queries answering 0) installed with ``set_platform``;
3. ``FSDPEngineWithLMHead`` is registered for ``device=["cuda", "npu"]`` only (``transformer_impl.py:1143``: "No
   engine registered for device='cpu'") -> the same class registered for "cpu".

Also needed as overrides (not patches): ``+model.override_config.attn_implementation=sdpa`` (flash-attn is the
default and absent), ``model.use_remove_padding=False``, ``engine.strategy=fsdp2`` (FSDP1 refuses CPU modules with
``sync_module_states=True``), ``trainer.device=cpu``. The training itself is verl's unmodified code.
"""
import contextlib
import os
import types

import torch
import torch.distributed as dist
from verl.plugin.platform import platform_manager
from verl.plugin.platform.platform_base import PlatformBase


class _CpuDeviceModule(types.ModuleType):
    """``torch.cpu`` plus the ``torch.cuda`` functions verl calls (memory queries answer 0)."""

    def __getattr__(self, name):
        if "memory" in name or name.startswith("mem_"):
            return lambda *args, **kwargs: 0
        return getattr(torch.cpu, name)


_device = _CpuDeviceModule("verl_cpu_device")
_device.get_device_name = lambda *args, **kwargs: "cpu"
_device.mem_get_info = lambda *args, **kwargs: (0, 1)
_device.set_device = lambda *args, **kwargs: None
_device.current_device = lambda: "cpu"
_device.device_count = lambda: 1
_device.is_available = lambda: True
_device.synchronize = lambda *args, **kwargs: None
_device.empty_cache = lambda: None
_device.manual_seed = torch.manual_seed
_device.manual_seed_all = torch.manual_seed


class CPUPlatform(PlatformBase):
    device_name = "cpu"
    vendor_name = "cpu"
    device_module = _device

    def is_available(self):
        return True

    def current_device(self):
        return "cpu"

    def device_count(self):
        return 1

    def set_device(self, device_index):
        pass

    def synchronize(self, device_index=None):
        pass

    def manual_seed(self, seed):
        torch.manual_seed(seed)

    def manual_seed_all(self, seed):
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings):
        pass

    def empty_cache(self):
        pass

    def get_device_capability(self, device_index=0):
        return None, None

    def communication_backend_name(self):
        return "gloo"

    def visible_devices_envvar(self):
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg):
        yield

    def profiler_start(self):
        pass

    def profiler_stop(self):
        pass

    def ray_resource_name(self):
        return "CPU"

    def ray_noset_envvars(self):
        return []

    def is_ipc_supported(self):
        return False

    def cudart(self):
        return None


def _init_process_group(timeout_second=None):
    dist.init_process_group(backend="gloo")
    return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def install() -> None:
    platform_manager.set_platform(CPUPlatform())
    import verl.utils.distributed

    verl.utils.distributed.initialize_global_process_group = _init_process_group
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    for backend in ("fsdp", "fsdp2"):
        EngineRegistry._engines["language_model"][backend]["cpu"] = FSDPEngineWithLMHead


if __name__ == "__main__":
    install()
    from verl.trainer import sft_trainer

    sft_trainer.main()
