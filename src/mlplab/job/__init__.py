"""One job's life: built from its config, trained by an engine, its outcome in metrics.json."""
