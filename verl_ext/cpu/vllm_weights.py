"""vLLM-CPU keeps each Linear layer's weight tensor, so verl can sync new weights into the rollout server.

On the CPU platform vLLM's ``UnquantizedLinearMethod.process_weights_after_loading`` packs every Linear weight into a
oneDNN (or sgl-kernel) handle and replaces ``layer.weight`` with an empty tensor
(``vllm/model_executor/layers/linear.py:211-215`` -> ``layers/utils.py:228-306``, ``remove_weight=True``). verl
syncs the actor's weights after every step through ``model.load_weights`` into those parameters
(``verl/workers/rollout/vllm_rollout/utils.py:306-322``), which then fails on the empty tensors at the first sync.
`keep_weights` wraps ``dispatch_cpu_unquantized_gemm`` so it always keeps the weight (``remove_weight=False``, what
vLLM already does for the embedding, ``vocab_parallel_embedding.py:65``); verl's own call of
``process_weights_after_loading`` after each sync (``vllm_rollout/utils.py:349-353``) then repacks the handle from
the new weights. Costs one extra copy of the Linear weights in the server's memory. Registered by
`verl_ext.cpu.register` for the module ``vllm.model_executor.layers.utils`` (every process that imports verl, the vLLM
worker included); vLLM calls the function only on its CPU platform, so it is inert on GPUs.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["keep_weights", "patch_vllm_utils"]


def keep_weights(dispatch: Callable[..., Any]) -> Callable[..., Any]:
    """`dispatch` (``dispatch_cpu_unquantized_gemm(layer, remove_weight)``) that never removes ``layer.weight``."""
    if getattr(dispatch, "__verl_ext_keeps_weights__", False):
        return dispatch

    @functools.wraps(dispatch)
    def dispatch_keeping_weight(layer: Any, remove_weight: bool = False, *args: Any, **kwargs: Any) -> Any:
        return dispatch(layer, False, *args, **kwargs)

    dispatch_keeping_weight.__verl_ext_keeps_weights__ = True
    return dispatch_keeping_weight


def patch_vllm_utils() -> None:
    """Wrap ``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm`` (linear.py imports it at call time)."""
    import vllm.model_executor.layers.utils as utils

    utils.dispatch_cpu_unquantized_gemm = keep_weights(utils.dispatch_cpu_unquantized_gemm)
