"""EditGRPO's edit step inside verl's rollout (agent-loop manager/worker) and token splicing.

    +actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ

* ``verl_ext.rollout.edit_worker``: ``EditAgentLoopManagerTQ`` / ``EditAgentLoopWorker`` (the V1 trainer plug-in);
* ``verl_ext.rollout.config``: ``EditRolloutConfig``, the ``editgrpo`` Hydra key, and the group plans;
* ``verl_ext.rollout.splice``: pure token splicing (kept sentences keep their sampled token ids);
* ``verl_ext.rollout.analysis``: analyzer construction by name and cross-prompt batching.

The CPU debug profile's rollout backend (Hugging Face ``generate`` behind verl's server protocol) is in
``verl_ext.cpu``.

Attributes are resolved lazily so that importing the pure modules does not import Ray, TransferQueue or verl's
agent loop.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "EditAgentLoopManagerTQ": "verl_ext.rollout.edit_worker",
    "EditAgentLoopWorker": "verl_ext.rollout.edit_worker",
    "validate_edit_setup": "verl_ext.rollout.edit_worker",
    "EditRolloutConfig": "verl_ext.rollout.config",
    "plan_group": "verl_ext.rollout.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'verl_ext.rollout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
