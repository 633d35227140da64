"""tunelab.models.size: parameter counts a user decides by."""

from __future__ import annotations

import torch

from tunelab.models.size import count_parameters


def test_tied_parameters_are_counted_once():
    embedding = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight
    model = torch.nn.ModuleList([embedding, head])
    head.requires_grad_(False)
    assert count_parameters(model) == (0, 40)
