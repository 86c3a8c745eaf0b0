"""What a finished run is used for: testing a checkpoint, classifying images with it."""
