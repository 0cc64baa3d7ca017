"""verl's platform for a machine without an accelerator: device ``cpu``, backend ``gloo``, real memory queries.

verl resolves its platform once per process (``verl/plugin/platform/platform_manager.py:83-117``): the
``VERL_PLATFORM`` environment variable names a class registered with ``PlatformRegistry.register``, else the
registered platforms are probed, else it falls back to ``nvidia`` -- on a CPU machine ``get_torch_device()`` would be
``torch.cuda`` and the first memory query fails ("Found no NVIDIA driver"). ``CPUPlatform`` is registered as ``cpu``
and is never auto-detected (``is_platform_available`` is False), so it is used only where ``VERL_PLATFORM=cpu`` is set
(every Ray process inherits it from the launching shell).

``ray_resource_name`` is ``"GPU"`` on purpose: verl's resource pools ask Ray for one accelerator bundle per training
process and count only ``GPU``/``NPU`` resources (``verl/single_controller/ray/base.py:146-148,226-238``). The CPU
profile declares that many *logical* GPU slots to Ray (``+ray_kwargs.ray_init.num_gpus=N``); nothing uses CUDA.
"""
from __future__ import annotations

import contextlib
import os
import resource
import types
from typing import Any, Optional

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

__all__ = ["CPUPlatform", "DEFAULT_KVCACHE_GIB", "KVCACHE_ENV", "PLATFORM_NAME", "cpu_device_module"]

PLATFORM_NAME = "cpu"
KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
DEFAULT_KVCACHE_GIB = "1"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, sampled less often than /proc: never below the current figure
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _rss_bytes())


def _mem_get_info(*_: Any, **__: Any) -> tuple[int, int]:
    """(free, total) bytes of system memory, as ``torch.cuda.mem_get_info`` reports device memory."""
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def _noop(*_: Any, **__: Any) -> None:
    return None


def cpu_device_module() -> types.ModuleType:
    """``torch.cpu`` plus every ``torch.cuda`` function verl calls through ``get_torch_device()``.

    Memory figures are the process's resident set (current and peak) and the system's free/total memory, so verl's
    ``log_gpu_memory_usage`` lines report something true on CPU.
    """
    module = types.ModuleType("verl_ext_cpu_device")
    for name in ("Stream", "Event", "StreamContext", "current_stream", "stream", "synchronize", "is_initialized"):
        setattr(module, name, getattr(torch.cpu, name))
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: PLATFORM_NAME
    module.get_device_name = lambda *_, **__: PLATFORM_NAME
    module.set_device = _noop
    module.empty_cache = _noop
    module.ipc_collect = _noop
    module.set_per_process_memory_fraction = _noop
    module.reset_peak_memory_stats = _noop
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = lambda *_, **__: torch.get_rng_state()
    module.set_rng_state = lambda state, *_, **__: torch.set_rng_state(state)
    module.mem_get_info = _mem_get_info
    module.memory_allocated = lambda *_, **__: _rss_bytes()
    module.memory_reserved = lambda *_, **__: _rss_bytes()
    module.max_memory_allocated = lambda *_, **__: _peak_rss_bytes()
    module.max_memory_reserved = lambda *_, **__: _peak_rss_bytes()
    return module


@PlatformRegistry.register(platform=PLATFORM_NAME)
class CPUPlatform(PlatformBase):
    """``VERL_PLATFORM=cpu``: verl's device abstraction answered by the CPU (see the module docstring)."""

    _device_module = cpu_device_module()

    @property
    def device_name(self) -> str:
        return PLATFORM_NAME

    @property
    def vendor_name(self) -> str:
        return PLATFORM_NAME

    @property
    def device_module(self) -> types.ModuleType:
        return self._device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: a GPU machine must not silently train on its CPU. Select it with VERL_PLATFORM=cpu.
        return False

    def current_device(self) -> str:
        return PLATFORM_NAME

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: Any) -> None:
        pass

    def synchronize(self, device_index: Optional[int] = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for the logical GPU slots; the CPU build of torch ignores it.
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None

    def rollout_env_vars(self) -> dict[str, str]:
        """The vLLM server actor's environment (verl passes it at ``vllm_async_server.py:1372-1375``).

        vLLM-CPU sizes its KV cache from ``VLLM_CPU_KVCACHE_SPACE`` GiB (``vllm/platforms/cpu.py:133-137``); unset, it
        reserves ``gpu_memory_utilization`` of the host's RAM and refuses to start beside the trainer. Default 1 GiB
        (the CPU profile's tiny and debug models need far less); a value in the launching shell wins.
        """
        return {KVCACHE_ENV: os.environ.get(KVCACHE_ENV) or DEFAULT_KVCACHE_GIB}
