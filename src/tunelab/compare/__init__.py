"""Compare methods under one budget: the comparison file (``spec``), running it (``runner``), the
records and their files (``results``), and the page and terminal table (``report``)."""

from tunelab.compare.results import primary_metric
from tunelab.compare.runner import ComparisonResult, run_comparison
from tunelab.compare.spec import ComparisonSpec, load_comparison

__all__ = ["ComparisonResult", "ComparisonSpec", "load_comparison", "primary_metric", "run_comparison"]
