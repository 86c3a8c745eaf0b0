from pathlib import Path

import lightning as L
import pytest
import torch
from torch.nn.functional import cross_entropy

from mlplab.data.mnist import MNISTDataModule
from mlplab.job.build import build_classifier

OPTIMIZERS = sorted(
    path.stem
    for path in (Path(__file__).parents[1] / "conf" / "optimizer").glob("*.yaml")
    if path.stem != "sparse_adam"
)


def mean_training_loss(classifier, datamodule) -> float:
    features, labels = datamodule.splits["train"]
    classifier.eval()
    with torch.no_grad():
        return classifier.loss_function(classifier(features), labels).item()


def bare_trainer(**limits) -> L.Trainer:
    """A Trainer with no logger, checkpoint, bar or validation: only the training loop."""
    return L.Trainer(
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **limits,
    )


def datamodule_of(cfg) -> MNISTDataModule:
    datamodule = MNISTDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    datamodule.setup("fit")
    return datamodule


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_training_loss_in_a_few_steps(small_run_config, optimizer):
    cfg = small_run_config(
        f"optimizer={optimizer}", "logger=none", "callbacks.model_checkpoint=null"
    )
    L.seed_everything(0, verbose=False)
    datamodule = datamodule_of(cfg)
    classifier = build_classifier(cfg)
    before = mean_training_loss(classifier, datamodule)
    trainer = bare_trainer(max_steps=30)
    trainer.fit(classifier, datamodule=datamodule)
    assert trainer.global_step == 30
    assert mean_training_loss(classifier, datamodule) < 0.9 * before


def test_optimizer_list_covers_the_course_and_the_modern_adam_variants():
    expected = {"sgd", "adadelta", "adagrad", "adam", "adamax", "asgd", "lbfgs", "rmsprop", "rprop"}
    assert expected | {"adamw", "nadam", "radam"} == set(OPTIMIZERS)


def test_hyperparameters_are_plain_values_so_checkpoints_load_weights_only(
    small_run_config, tmp_path
):
    cfg = small_run_config("logger=none", "callbacks.model_checkpoint=null")
    classifier = build_classifier(cfg)
    trainer = bare_trainer(max_steps=1)
    trainer.fit(classifier, datamodule=datamodule_of(cfg))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["model"]["hidden_sizes"] == [256, 256]
    assert checkpoint["hyper_parameters"]["optimizer"]["_target_"] == "torch.optim.Adam"


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs"])
def test_training_matches_a_hand_written_loop_step_for_step(small_run_config, optimizer):
    """Same weights bit for bit, and train/loss and train/acc of the last epoch as summed by hand
    (over each step's first evaluation of the batch, before the update)."""
    import copy

    from hydra.utils import instantiate

    cfg = small_run_config(
        f"optimizer={optimizer}", "logger=none", "callbacks.model_checkpoint=null"
    )
    datamodule = datamodule_of(cfg)
    classifier = build_classifier(cfg)
    reference = copy.deepcopy(classifier.network)
    trainer = bare_trainer(max_epochs=2)
    trainer.fit(classifier, datamodule=datamodule)

    batches = datamodule.train_dataloader()  # same seed: the same order of batches
    optimizer_ = instantiate(cfg.optimizer)(reference.parameters())
    loss_function = torch.nn.CrossEntropyLoss()
    for _ in range(2):
        loss_sum, correct, count = 0.0, 0, 0
        for features, labels in batches:
            evaluations = []

            def closure(features=features, labels=labels, evaluations=evaluations):
                optimizer_.zero_grad()
                logits = reference(features)
                loss = loss_function(logits, labels)
                loss.backward()
                evaluations.append((logits.argmax(dim=1), loss.item()))
                return loss

            optimizer_.step(closure)
            predictions, loss = evaluations[0]
            loss_sum += loss * len(labels)
            correct += int((predictions == labels).sum())
            count += len(labels)
    for trained, expected in zip(classifier.network.parameters(), reference.parameters()):
        # Bit for bit on any CPU: both sides run the same Linear layers and optimiser on the
        # same batches, so the same kernels add the same numbers in the same order.
        torch.testing.assert_close(trained, expected, rtol=0, atol=0)
    metrics = trainer.callback_metrics  # summed in float32 on the device
    assert metrics["train/acc"].item() == pytest.approx(correct / count, rel=1e-6)
    assert metrics["train/loss"].item() == pytest.approx(loss_sum / count, rel=1e-6)


def evaluation_trainer() -> L.Trainer:
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.mark.parametrize("eval_batch_size", [7, 30, 1000])
def test_val_and_test_loss_weigh_every_example_alike_whatever_the_batch_size(
    small_run_config, eval_batch_size
):
    """100 validation and 200 test images: batches of 7 and 30 leave a short last batch."""
    cfg = small_run_config(f"data.eval_batch_size={eval_batch_size}", "logger=none")
    datamodule = datamodule_of(cfg)
    classifier = build_classifier(cfg)
    (validated,) = evaluation_trainer().validate(classifier, datamodule=datamodule, verbose=False)
    (tested,) = evaluation_trainer().test(classifier, datamodule=datamodule, verbose=False)
    classifier.eval()
    with torch.no_grad():
        for stage, results in (("val", validated), ("test", tested)):
            features, labels = datamodule.splits[stage]
            logits = classifier(features)
            loss_over_all_examples = cross_entropy(logits, labels).item()
            accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
            assert results[f"{stage}/loss"] == pytest.approx(loss_over_all_examples, rel=1e-6)
            assert results[f"{stage}/acc"] == pytest.approx(accuracy, abs=1e-7)
