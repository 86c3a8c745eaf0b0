"""Hyperparameter search: the search space, the Optuna study, each trial's report and pruning."""
