"""verl's process-group setup with a single ``gloo`` backend on the CPU platform.

verl builds its backend string as ``f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"``
(``verl/utils/distributed.py:63`` and ``:89``). With device ``cpu`` that is ``"cpu:gloo,cpu:gloo"``, which
``torch.distributed`` rejects ("Duplicate device type cpu"), and no platform method can change the string. This is
the one place where the CPU profile wraps a verl function instead of registering a class: the wrappers call verl's
own functions with ``backend="gloo"`` (``initialize_global_process_group_ray`` takes that argument) when the CPU
platform is active, and are transparent otherwise. ``tests/cpu/test_cpu_profile.py`` shows the failure they fix.
"""
from __future__ import annotations

import functools
import os
from datetime import timedelta
from typing import Callable

__all__ = ["gloo_process_group", "gloo_process_group_ray", "on_cpu_platform"]


def on_cpu_platform() -> bool:
    from verl.plugin.platform import get_platform

    from verl_ext.cpu.platform import PLATFORM_NAME

    return get_platform().device_name == PLATFORM_NAME


def gloo_process_group_ray(original: Callable) -> Callable:
    """Wrap ``verl.utils.distributed.initialize_global_process_group_ray`` (used by verl's engine workers)."""
    if getattr(original, "__verl_ext_cpu__", False):
        return original

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        if backend is None and on_cpu_platform():
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    initialize_global_process_group_ray.__verl_ext_cpu__ = True
    return initialize_global_process_group_ray


def gloo_process_group(original: Callable) -> Callable:
    """Wrap ``verl.utils.distributed.initialize_global_process_group`` (used by verl's SFT trainer under torchrun)."""
    if getattr(original, "__verl_ext_cpu__", False):
        return original

    @functools.wraps(original)
    def initialize_global_process_group(timeout_second=36000):
        if not on_cpu_platform():
            return original(timeout_second=timeout_second)
        import torch.distributed

        torch.distributed.init_process_group(
            backend="gloo", timeout=timedelta(seconds=timeout_second),
            init_method=os.environ.get("DIST_INIT_METHOD", None),
        )
        return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    initialize_global_process_group.__verl_ext_cpu__ = True
    return initialize_global_process_group
