"""verl's FSDP engines on device ``cpu`` (registered by `verl_ext.cpu.register`).

They are verl's ``FSDPEngineWithLMHead`` / ``FSDPEngineWithValueHead`` with one difference: a forward-only engine
(the reference policy) is sharded without FSDP's CPU-offload policy. verl always gives forward-only engines
``CPUOffloadPolicy(pin_memory=True)`` under fsdp2 (``verl/workers/engine/fsdp/transformer_impl.py:459-462``), and
pinning host memory needs CUDA ("Found no NVIDIA driver on your system"); on a CPU the parameters already live in
host memory, so there is nothing to offload. ``forward_only`` is read in ``_build_fsdp_module`` only to choose the
offload policy (``:432`` fsdp1, ``:459`` fsdp2), so the engine builds that module with a copy of its config that has
``forward_only=False`` and keeps the original everywhere else (bf16 reference weights, no optimizer, no grads).
"""
from __future__ import annotations

import dataclasses

from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

__all__ = ["CPUFSDPEngineWithLMHead", "CPUFSDPEngineWithValueHead"]


class _NoHostOffloadMixin:
    def _build_fsdp_module(self, module):
        if not self.engine_config.forward_only:
            return super()._build_fsdp_module(module)
        config = self.engine_config
        self.engine_config = dataclasses.replace(config, forward_only=False)
        try:
            return super()._build_fsdp_module(module)
        finally:
            self.engine_config = config


class CPUFSDPEngineWithLMHead(_NoHostOffloadMixin, FSDPEngineWithLMHead):
    """verl's actor/reference FSDP engine on the CPU platform (see the module docstring)."""


class CPUFSDPEngineWithValueHead(_NoHostOffloadMixin, FSDPEngineWithValueHead):
    """verl's critic FSDP engine on the CPU platform (see the module docstring)."""
