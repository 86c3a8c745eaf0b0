"""Beyond one process: DDP inside Hydra jobs, jobs side by side, Optuna studies."""
