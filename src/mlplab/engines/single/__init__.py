"""The single engine: one network in Lightning's Trainer, with Lightning's callbacks."""
