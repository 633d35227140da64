"""tunelab: adapt language models to a task with every strategy, behind one interface.

The public Python entry points mirror the CLI: ``load_config`` + ``train`` (``tunelab train``),
``generate_text`` (``tunelab generate``) and ``merge_run`` (``tunelab merge``).
"""

from tunelab.errors import UserError
from tunelab.methods.config_loading import load_config

__version__ = "0.1.0"

__all__ = ["UserError", "__version__", "load_config", "train", "generate_text", "merge_run"]


def __getattr__(name: str):
    # Heavy modules (torch, transformers) load only when these are first used, so that
    # `tunelab train --help` and config validation stay instant.
    if name == "train":
        from tunelab.training.recipe import train

        return train
    if name == "generate_text":
        from tunelab.inference.generate import generate_text

        return generate_text
    if name == "merge_run":
        from tunelab.inference.merge import merge_run

        return merge_run
    raise AttributeError(name)
