"""mlplab: train MLPs on MNIST and compare what activations, initialisations and optimisers do."""
