"""Beyond one process: DDP inside Hydra jobs, and the threads and GPU of jobs side by side."""
