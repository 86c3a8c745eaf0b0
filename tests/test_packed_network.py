"""The stacked network's layers compute what each copy's own layer computes."""

import pytest
import torch
from torch.nn.functional import linear

from mlplab.engines.packed.network import packed_linear


@pytest.mark.parametrize("outputs", [10, 300])  # fewer outputs than examples, and more
def test_packed_linear_gives_each_copy_its_own_layers_outputs_and_gradients(outputs):
    copies, examples, inputs = 3, 100, 20
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(copies, examples, inputs, dtype=torch.float64, generator=generator)
    weights = torch.randn(copies, outputs, inputs, dtype=torch.float64, generator=generator)
    biases = torch.randn(copies, outputs, dtype=torch.float64, generator=generator)
    stacked_weight = weights.transpose(1, 2).contiguous().requires_grad_()  # [K, in, out]
    stacked_bias = biases.clone().requires_grad_()
    x.requires_grad_()
    upstream = torch.randn(copies, examples, outputs, dtype=torch.float64, generator=generator)

    packed = packed_linear(x, stacked_weight, stacked_bias)
    packed.backward(upstream)

    for copy in range(copies):
        weight = weights[copy].clone().requires_grad_()
        bias = biases[copy].clone().requires_grad_()
        features = x[copy].detach().clone().requires_grad_()
        alone = linear(features, weight, bias)
        alone.backward(upstream[copy])
        torch.testing.assert_close(packed[copy], alone, rtol=0, atol=1e-12)
        torch.testing.assert_close(stacked_weight.grad[copy], weight.grad.t(), rtol=0, atol=1e-12)
        torch.testing.assert_close(stacked_bias.grad[copy], bias.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(x.grad[copy], features.grad, rtol=0, atol=1e-12)
