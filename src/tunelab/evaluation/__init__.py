"""Scoring a model's answers on a data file: prompts, batched generation, metrics, eval.json."""
