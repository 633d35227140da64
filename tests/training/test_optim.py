"""tunelab.training.optim: AdamW runs torch's fused kernel on CPU and CUDA, with the same updates as
the per-tensor loop, decay on matrices only, and a checkpoint of the loop's optimizer resumes in it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tunelab.config.schema import TrainConfig
from tunelab.training.optim import build_optimizer, load_optimizer_state


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inputs = torch.randn(5, 8, generator=generator)
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        optimizer.step()


def reference_adamw(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The per-tensor loop, same groups: what the fused kernel must agree with."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": config.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, foreach=False)


CONFIG = TrainConfig(lr=1e-2, weight_decay=0.1)


def test_on_a_cpu_adamw_is_fused_and_updates_as_the_per_tensor_loop():
    fused_model, loop_model = small_model(), small_model()
    optimizer = build_optimizer(fused_model, CONFIG, "cpu")
    assert optimizer.defaults["fused"] is True
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.1, 0.0]  # matrices, then the rest

    train_steps(fused_model, optimizer, 10)
    train_steps(loop_model, reference_adamw(loop_model, CONFIG), 10)

    for fused, loop in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fused_model[0].weight, small_model()[0].weight)  # it did train


@pytest.mark.parametrize(("device_type", "sharded"), [("cpu", True), ("mps", False), ("xla", False)])
def test_sharded_runs_and_other_devices_keep_torchs_default(device_type, sharded):
    optimizer = build_optimizer(small_model(), CONFIG, device_type, sharded=sharded)

    assert not optimizer.defaults["fused"]


def test_a_checkpoint_of_the_per_tensor_loop_resumes_in_the_fused_optimizer():
    """Runs checkpointed before AdamW was fused resume and continue as the loop would have."""
    model = small_model()
    loop = reference_adamw(model, CONFIG)
    train_steps(model, loop, 4)
    saved_weights = {name: p.detach().clone() for name, p in model.state_dict().items()}
    saved_state = copy.deepcopy(loop.state_dict())  # state_dict holds the live moment tensors
    train_steps(model, loop, 4, seed=2)  # the loop goes on

    resumed = small_model()
    resumed.load_state_dict(saved_weights)
    optimizer = build_optimizer(resumed, CONFIG, "cpu")
    load_optimizer_state(optimizer, saved_state)
    assert all(group["fused"] is True for group in optimizer.param_groups)  # not the loop's saved choice
    train_steps(resumed, optimizer, 4, seed=2)

    for fused, looped in zip(resumed.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(fused, looped, rtol=1e-5, atol=1e-6)
