"""The ``tunelab`` command: thin argument parsing over functions usable from Python."""
