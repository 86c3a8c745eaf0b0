"""mlplab: train MLPs on MNIST-format datasets and compare what activations, initialisations
and optimisers do.

`from mlplab import load_checkpoint, predict` loads a trained network for a notebook (and
`ImagesRefused`, what predict raises for files it cannot classify). They are imported on first
use, so that commands which need none of them start without PyTorch.
"""

__all__ = ["load_checkpoint", "predict", "ImagesRefused"]


def __getattr__(name: str):
    if name in __all__:
        from mlplab.use import trained_network

        return getattr(trained_network, name)
    raise AttributeError(f"module 'mlplab' has no attribute {name!r}")
