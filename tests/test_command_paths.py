"""Paths on a command line are taken as they are, whatever their folder names hold."""

from mlplab.config.paths import paths_as_given

KEYS = ("ckpt_path", "data_root")


def test_a_sweep_jobs_path_is_quoted_for_hydra_and_other_arguments_are_not():
    arguments = ["ckpt_path=out/0_seed=1,lr=0.1/it's.ckpt", "accelerator=cpu"]
    assert paths_as_given(arguments, KEYS) == [
        "ckpt_path='out/0_seed=1,lr=0.1/it\\'s.ckpt'",
        "accelerator=cpu",
    ]


def test_null_and_a_path_the_user_quoted_already_stay_as_they_are():
    arguments = ["data_root=null", "ckpt_path='out/0_seed=1/last.ckpt'"]
    assert paths_as_given(arguments, KEYS) == arguments
