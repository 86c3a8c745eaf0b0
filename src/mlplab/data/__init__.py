"""Datasets' files -> tensors -> batches, and a person's image -> a 28 x 28 input."""
