"""What a training run returns to its caller, trained or in-context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class TrainResult:
    """What ``train`` returns: the summary (as in summary.json), the run folder and the trained model."""

    summary: dict[str, Any]
    run_dir: Path
    model: torch.nn.Module | None  # None for the strategies that train nothing
