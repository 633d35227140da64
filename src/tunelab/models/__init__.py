"""Models: resolving a model reference (hub id, folder, run folder) and loading it."""
