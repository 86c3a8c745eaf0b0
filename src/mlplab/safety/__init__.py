"""What keeps a run safe: atomic checkpoints, resume, signals, run folders."""
