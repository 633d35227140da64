"""Training: our loop on accelerate, its loss, batching, checkpoints and the ``train`` recipe."""
