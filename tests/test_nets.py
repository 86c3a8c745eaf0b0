import pytest
import torch
from torch import nn

from mlplab.model.nets import MLP, Maxout, SoftmaxRegression, init_linear_weights, linear_layers


def test_mlp_maps_images_to_logits_through_the_hidden_sizes():
    network = MLP([256, 128], activation=nn.ReLU)
    widths = [(layer.in_features, layer.out_features) for layer in linear_layers(network)]
    assert widths == [(784, 256), (256, 128), (128, 10)]
    assert network(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert sum(isinstance(m, nn.ReLU) for m in network.modules()) == 2


def test_each_hidden_layer_gets_its_own_activation_module():
    network = MLP([8, 8], activation=nn.PReLU)
    prelus = [m for m in network.modules() if isinstance(m, nn.PReLU)]
    assert len(prelus) == 2 and prelus[0].weight is not prelus[1].weight


def test_dropout_and_batchnorm_are_added_per_hidden_layer_only_when_asked():
    plain = MLP([16, 16], activation=nn.Tanh)
    full = MLP([16, 16], activation=nn.Tanh, dropout=0.3, batchnorm=True)
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in plain.modules())
    assert [type(m) for m in full.layers[1:5]] == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout]
    assert sum(isinstance(m, nn.Dropout) for m in full.modules()) == 2
    assert all(m.p == 0.3 for m in full.modules() if isinstance(m, nn.Dropout))


def test_maxout_keeps_the_largest_of_its_pieces_per_unit():
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0, 0.0, 9.0]])
    assert torch.equal(Maxout(pieces=2)(x), torch.tensor([[5.0, -2.0, 9.0]]))
    assert torch.equal(Maxout(pieces=3)(x), torch.tensor([[5.0, 9.0]]))


def test_maxout_mlp_computes_k_affine_pieces_per_hidden_unit():
    network = MLP([32, 16], activation=lambda: Maxout(pieces=3))
    widths = [(layer.in_features, layer.out_features) for layer in linear_layers(network)]
    assert widths == [(784, 96), (32, 48), (16, 10)]
    assert network(torch.rand(4, 784)).shape == (4, 10)


def test_softmax_regression_is_one_linear_layer():
    network = SoftmaxRegression()
    assert [(lin.in_features, lin.out_features) for lin in linear_layers(network)] == [(784, 10)]
    assert network(torch.rand(3, 784)).shape == (3, 10)


def test_weight_init_replaces_every_linear_weight_and_leaves_biases():
    torch.manual_seed(0)
    network = MLP([512, 512], activation=nn.ReLU)
    biases = [layer.bias.clone() for layer in linear_layers(network)]
    init_linear_weights(network, lambda weight: nn.init.normal_(weight, std=1.0))
    for layer, bias in zip(linear_layers(network), biases):
        assert layer.weight.std().item() == pytest.approx(1.0, abs=0.05)
        assert torch.equal(layer.bias, bias)


def test_zeros_init_zeroes_weights_and_none_keeps_pytorch_default():
    torch.manual_seed(0)
    network = MLP([64], activation=nn.ReLU)
    before = [layer.weight.clone() for layer in linear_layers(network)]
    init_linear_weights(network, None)
    assert all(torch.equal(layer.weight, w) for layer, w in zip(linear_layers(network), before))
    init_linear_weights(network, nn.init.zeros_)
    assert all(layer.weight.abs().sum() == 0 for layer in linear_layers(network))
