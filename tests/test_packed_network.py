"""The stacked network's layers compute what each copy's own layer computes."""

import pytest
import torch
from torch.nn.functional import linear

from mlplab.engines.packed.network import packed_linear


def stacked_layers(outputs: int, dtype: torch.dtype = torch.float64):
    """Inputs (3, 100, 20), each copy's Linear weights (3, outputs, 20) and biases."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 100, 20, dtype=dtype, generator=generator)
    weights = torch.randn(3, outputs, 20, dtype=dtype, generator=generator)
    biases = torch.randn(3, outputs, dtype=dtype, generator=generator)
    return x, weights, biases


# Fewer outputs than examples, and more; the first layer's input (the images) needs no gradient.
@pytest.mark.parametrize("outputs", [10, 300])
@pytest.mark.parametrize("input_needs_grad", [True, False])
def test_packed_linear_gives_each_copy_its_own_layers_outputs_and_gradients(
    outputs, input_needs_grad
):
    x, weights, biases = stacked_layers(outputs)
    stacked_weight = weights.transpose(1, 2).contiguous().requires_grad_()  # [K, in, out]
    stacked_bias = biases.clone().requires_grad_()
    x.requires_grad_(input_needs_grad)
    upstream = torch.randn(*x.shape[:2], outputs, dtype=x.dtype)

    packed = packed_linear(x, stacked_weight, stacked_bias)
    packed.backward(upstream)

    assert packed.is_contiguous()
    assert (x.grad is not None) == input_needs_grad
    for copy in range(len(x)):
        weight = weights[copy].clone().requires_grad_()
        bias = biases[copy].clone().requires_grad_()
        features = x[copy].detach().clone().requires_grad_()
        alone = linear(features, weight, bias)
        alone.backward(upstream[copy])
        torch.testing.assert_close(packed[copy], alone, rtol=0, atol=1e-12)
        torch.testing.assert_close(stacked_weight.grad[copy], weight.grad.t(), rtol=0, atol=1e-12)
        torch.testing.assert_close(stacked_bias.grad[copy], bias.grad, rtol=0, atol=1e-12)
        if input_needs_grad:
            torch.testing.assert_close(x.grad[copy], features.grad, rtol=0, atol=1e-12)


def relative_error(approximate: torch.Tensor, exact: torch.Tensor) -> float:
    return ((approximate.double() - exact).abs().max() / exact.abs().max()).item()


@pytest.mark.parametrize("outputs", [10, 300])
def test_packed_linear_under_bfloat16_autocast_gives_float32_gradients_near_exact(outputs):
    x, weights, biases = stacked_layers(outputs, torch.float32)
    inputs = [x, weights.transpose(1, 2).contiguous(), biases]
    exact = [tensor.double().requires_grad_() for tensor in inputs]
    packed_linear(*exact).sum().backward()
    for tensor in inputs:
        tensor.requires_grad_()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        packed = packed_linear(*inputs)
    packed.float().sum().backward()

    assert packed.dtype == torch.bfloat16
    # bfloat16 keeps 8 significant bits: a relative error of 2^-8 per factor, summed in float32.
    assert relative_error(packed, packed_linear(*exact)) < 2**-6
    for tensor, reference in zip(inputs, exact):
        assert tensor.grad.dtype == torch.float32
        assert relative_error(tensor.grad, reference.grad) < 2**-6
