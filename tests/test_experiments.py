from pathlib import Path

import pytest

from tests.conftest import train
from tests.test_run import read_metrics

PRESETS = sorted(
    path.stem for path in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml")
)


def test_there_is_one_preset_per_course_notebook_the_activation_studies_and_the_inits_history():
    assert PRESETS == [
        "lab09_1_softmax",
        "lab09_2_relu_normal_init",
        "lab09_3_xavier",
        "lab09_4_deep",
        "lab09_5_dropout",
        "lab09_6_batchnorm",
        "rbm_vs_xavier",
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
    assert softmax.model._target_ == "mlplab.model.nets.SoftmaxRegression"
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


def test_rbm_vs_xavier_sweeps_three_inits_of_the_deep_sigmoid_net_and_a_relu_reference(
    tmp_path, tiny_mnist
):
    """12 jobs: (activation, init) pairs, not their every combination, times 3 seeds; each
    job trains sigmoid_deep_sgd's network the way that preset does."""
    import itertools

    from hydra import compose, initialize_config_dir

    from mlplab.config.compose import CONF
    from tests.conftest import compose_train_config

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        preset = compose("train", ["experiment=rbm_vs_xavier"], return_hydra_config=True)
    axes = {key: value.split(",") for key, value in preset.hydra.sweeper.params.items()}
    jobs = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    assert len(jobs) == 12 and {job["seed"] for job in jobs} == {"1", "2", "3"}

    pairs = set()
    for job in jobs:
        overrides = [f"{key}={value}" for key, value in job.items()]
        cfg = compose_train_config(tmp_path, tiny_mnist, ["experiment=rbm_vs_xavier", *overrides])
        init = cfg.init.weight._target_ if cfg.init.weight else cfg.init.pretraining._target_
        pairs.add((cfg.activation._target_.rsplit(".", 1)[1], init.rsplit(".", 1)[1]))
        same = [f"seed={job['seed']}", f"activation={job['hidden_units'].split('_')[0]}"]
        reference = compose_train_config(
            tmp_path, tiny_mnist, ["experiment=sigmoid_deep_sgd", *same]
        )
        for group in ("model", "optimizer", "data", "trainer"):
            assert cfg[group] == reference[group], group
    assert pairs == {
        ("Sigmoid", "normal_"),
        ("Sigmoid", "RBMPretraining"),
        ("Sigmoid", "xavier_uniform_"),
        ("ReLU", "kaiming_normal_"),
    }


@pytest.mark.end_to_end
def test_rbm_vs_xavier_multirun_reports_its_four_networks_with_pretraining_in_their_cost(
    tiny_mnist, tmp_path
):
    import csv

    from tests.conftest import SMALL_RUN
    from tests.test_cli import run_train

    sweep = tmp_path / "sweep"
    command = ["-m", "experiment=rbm_vs_xavier", "seed=1", *SMALL_RUN, f"hydra.sweep.dir={sweep}"]
    result = run_train(command, tiny_mnist, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    with (sweep / "summary.csv").open() as file:
        rows = {row["configuration"]: row for row in csv.DictReader(file)}
    assert set(rows) == {
        "hidden_units=sigmoid_normal",
        "hidden_units=sigmoid_rbm",
        "hidden_units=sigmoid_xavier_uniform",
        "hidden_units=relu_kaiming_normal",
    }
    assert {row["status"] for row in rows.values()} == {"1 completed"}
    pretrained = rows.pop("hidden_units=sigmoid_rbm")
    assert float(pretrained["pretrain_seconds"]) > 0
    # Same network, same steps: the pre-training is what the FLOPs add.
    (job,) = sweep.glob("*hidden_units=sigmoid_rbm*")
    pretraining = read_metrics(job)["pretrain_flops"]
    assert {float(row["train_flops"]) for row in rows.values()} == {
        float(pretrained["train_flops"]) - pretraining
    }
