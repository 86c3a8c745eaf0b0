from pathlib import Path

import pytest

from tests.conftest import train
from tests.test_run import read_metrics

PRESETS = sorted(
    path.stem for path in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml")
)


def test_there_is_one_preset_per_course_notebook_and_the_two_activation_studies():
    assert PRESETS == [
        "lab09_1_softmax",
        "lab09_2_relu_normal_init",
        "lab09_3_xavier",
        "lab09_4_deep",
        "lab09_5_dropout",
        "lab09_6_batchnorm",
        "relu_vs_sigmoid",
        "sigmoid_deep_sgd",
    ]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_trains_a_few_batches(small_run_config, tmp_path, preset):
    train(small_run_config(f"experiment={preset}", "trainer.limit_train_batches=3"))
    assert read_metrics(tmp_path / "run")["status"] == "completed"


def test_presets_set_the_course_setups(tmp_path, tiny_mnist):
    from tests.conftest import compose_train_config

    def preset(name):
        return compose_train_config(tmp_path / name, tiny_mnist, [f"experiment={name}"])

    softmax = preset("lab09_1_softmax")
    assert softmax.model._target_ == "mlplab.nets.SoftmaxRegression"
    assert softmax.init.weight._target_ == "torch.nn.init.normal_"
    deep = preset("lab09_4_deep")
    assert list(deep.model.hidden_sizes) == [512, 512, 512, 512]
    assert deep.init.weight._target_ == "torch.nn.init.xavier_uniform_"
    assert preset("lab09_5_dropout").model.dropout == 0.3
    batchnorm = preset("lab09_6_batchnorm")
    assert (batchnorm.optimizer.lr, batchnorm.data.batch_size) == (0.01, 32)
    relu_vs_sigmoid = preset("relu_vs_sigmoid")
    assert list(relu_vs_sigmoid.model.hidden_sizes) == [520, 320, 240, 120]
    assert relu_vs_sigmoid.trainer.max_epochs == 9
    assert all(not preset(name).data.normalize for name in PRESETS)
