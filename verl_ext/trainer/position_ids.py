"""Guard for verl's mRoPE ``position_ids`` when every sequence of a batch has the same length.

TransferQueue hands the trainer's batch to the workers as jagged nested tensors built with
``torch.nested.as_nested_tensor(values, layout=torch.jagged)`` (``transfer_queue/storage/managers/
simple_storage_manager.py:574``). Qwen2.5-VL's ``position_ids`` are ``(4, L_i)`` per sequence; torch makes the
dimension that varies the ragged one (``_ragged_idx=2``, offsets over the tokens), but when every ``L_i`` is equal
nothing varies and it picks dimension 1 (offsets over the 4 rope rows). verl's ``maybe_fix_3d_position_ids``
(``verl/utils/tensordict_utils.py:910-915``, called at ``engine_workers.py:252,290`` and ``engine/base.py:124,145``)
then forces ``_ragged_idx=2`` onto those row offsets, and the first ``unbind`` of the batch
(``tensordict_utils.py:495``, the mini-batch split at ``engine_workers.py:289``) fails with ``split_with_sizes expects
split_sizes to sum exactly to ...``. A real run hits it when every prompt of the batch has the same length (a
templated prompt with equally sized images, as in IU-Xray at a fixed pixel budget) and every response is clipped at
``max_response_length`` (a policy that stopped emitting end-of-turn tokens, e.g. at a high learning rate).

`fix_3d_position_ids` rebuilds such a tensor with the token dimension ragged (verl's own
``nested_tensor_from_tensor_list(..., ragged_idx=2)``) before verl's fix runs; batches of unequal lengths are left
alone. Registered for the modules that bind verl's function by name.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from verl_ext.post_import import when_imported

__all__ = ["fix_3d_position_ids", "rebuild_equal_length_position_ids"]

#: verl modules that import ``maybe_fix_3d_position_ids`` by name (see the module docstring for the lines).
_IMPORTERS = ("verl.workers.engine_workers", "verl.workers.engine.base", "verl.workers.engine_workers_tinker")
_TOKEN_DIM = 2


def rebuild_equal_length_position_ids(data: Any) -> None:
    """Make ``data["position_ids"]`` (nested ``(B, 4, L_i)``) ragged along the tokens if torch made it ragged along
    the rope rows (all ``L_i`` equal)."""
    if "position_ids" not in data.keys():
        return
    position_ids = data["position_ids"]
    if not (position_ids.is_nested and position_ids.dim() == 3 and position_ids._ragged_idx != _TOKEN_DIM):
        return
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    data["position_ids"] = nested_tensor_from_tensor_list(list(position_ids.unbind()), ragged_idx=_TOKEN_DIM)


def fix_3d_position_ids(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """verl's `original` ``maybe_fix_3d_position_ids`` preceded by `rebuild_equal_length_position_ids`."""
    if getattr(original, "__verl_ext_position_ids__", False):
        return original

    @functools.wraps(original)
    def guarded(data: Any) -> None:
        rebuild_equal_length_position_ids(data)
        original(data)

    guarded.__verl_ext_position_ids__ = True
    return guarded


def _patch(module_name: str) -> None:
    import importlib

    module = importlib.import_module(module_name)
    if hasattr(module, "maybe_fix_3d_position_ids"):
        module.maybe_fix_3d_position_ids = fix_3d_position_ids(module.maybe_fix_3d_position_ids)


for _name in _IMPORTERS:
    when_imported(_name, functools.partial(_patch, _name))
