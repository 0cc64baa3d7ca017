"""A local LLM through vLLM, shared by the model-judged metrics (FactS, GREEN): why it cannot run here, and loading.

Both judges read a local model directory (no hub) and need vLLM on a CUDA device; a missing piece is reported in
words (the evaluation CLIs skip the column with the message) before anything loads.
"""
from __future__ import annotations

import os
from typing import Any, Optional


def availability(model_path: Optional[str], name: str, path_flag: str = "") -> tuple[bool, str]:
    """(can run, reason if not) for the ``name`` model at ``model_path``; ``path_flag`` names the option that sets
    the path in the "no path" message (e.g. ``" (--green-model)"``)."""
    if not model_path:
        return False, f"no {name} model path given{path_flag}"
    if not os.path.isdir(model_path):
        return False, f"{name} model directory {model_path!r} does not exist"
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no vLLM here
        return False, f"vLLM is not importable ({type(exc).__name__}: {exc}); install the gpu profile"
    import torch

    if not torch.cuda.is_available():
        return False, "vLLM needs a CUDA device and none is visible"
    return True, ""


def load_llm(
    model_path: Optional[str], name: str, unavailable: type[Exception], path_flag: str = "", **llm_kwargs: Any
) -> Any:
    """``vllm.LLM(model=model_path, **llm_kwargs)``, or ``unavailable(reason)`` raised when it cannot run here."""
    ok, why = availability(model_path, name, path_flag)
    if not ok:
        raise unavailable(why)
    from vllm import LLM

    return LLM(model=model_path, **llm_kwargs)
