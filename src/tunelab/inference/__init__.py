"""Using a trained run: generation and merging into a standalone model."""
