"""Every method over the tiny Llama and GPT-2: what trains, what is saved, what reloads.

Adding a method means adding a row to ``METHODS`` (and, where it has one, a parameter formula).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import training_config
from tunelab.errors import UserError
from tunelab.methods.last_layers import find_transformer_blocks
from tunelab.models.loading import load_causal_lm
from tunelab.training.recipe import train

METHODS = {
    "full": {"method.name": "full"},
    "last_layers": {"method.name": "last_layers", "method.layers": 1},
    "lora": {"method.name": "lora", "method.r": 4},
}
ARCHITECTURES = ["tiny_llama", "tiny_gpt2"]


def _trained(request, architecture, method, tmp_path, prompt_completion_file):
    model_folder = request.getfixturevalue(architecture)
    options = {**METHODS[method], "train.max_steps": 3, "train.lr": 1e-2}
    return model_folder, train(
        training_config(model_folder, prompt_completion_file, tmp_path / "run", **options), progress=False
    )


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("method", list(METHODS))
def test_artifact_reloads_to_identical_logits(request, architecture, method, tmp_path, prompt_completion_file):
    _, result = _trained(request, architecture, method, tmp_path, prompt_completion_file)
    ids = torch.tensor([[1, 10, 20, 30, 40, 50, 60]])
    reloaded = load_causal_lm(str(result.run_dir)).eval()
    torch.testing.assert_close(_logits(reloaded, ids), _logits(result.model, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("method", list(METHODS))
def test_only_the_methods_parameters_change(request, architecture, method, tmp_path, prompt_completion_file):
    model_folder, result = _trained(request, architecture, method, tmp_path, prompt_completion_file)
    base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    before = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    trained = result.model.unload() if method == "lora" else result.model  # lora: drop adapters, keep base
    after = trained.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    if method == "lora":
        assert changed == set()  # base weights are untouched
    elif method == "full":
        assert len(changed) >= len(before) // 2
    else:
        blocks = find_transformer_blocks(base)
        top = [name for name, p in base.named_parameters() if any(p is q for q in blocks[-1].parameters())]
        bottom = [name for name, p in base.named_parameters() if any(p is q for q in blocks[0].parameters())]
        assert set(top) <= changed
        assert not set(bottom) & changed


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_lora_trainable_params_match_the_formula(request, architecture, tmp_path, prompt_completion_file):
    model_folder, result = _trained(request, architecture, "lora", tmp_path, prompt_completion_file)
    base = AutoModelForCausalLM.from_pretrained(model_folder)
    head = base.get_output_embeddings()
    expected = 0
    for module in base.modules():
        if module is head or type(module).__name__ not in ("Linear", "Conv1D"):
            continue
        weight = module.weight  # Conv1D (GPT-2) stores (in, out), Linear (out, in): r * (in + out) either way
        expected += 4 * (weight.shape[0] + weight.shape[1])
    assert result.summary["trainable_params"] == expected
    saved = load_file(result.run_dir / "adapter_model.safetensors")
    assert sum(t.numel() for t in saved.values()) == expected  # the artifact holds only what trained


def test_full_saves_a_whole_model_that_transformers_loads(tiny_llama, tmp_path, prompt_completion_file):
    result = train(
        training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **{"method.name": "full"}), progress=False
    )
    plain = AutoModelForCausalLM.from_pretrained(result.run_dir).eval()
    ids = torch.tensor([[1, 5, 6, 7]])
    torch.testing.assert_close(_logits(plain, ids), _logits(result.model, ids))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method.name": "lora", "method.target_modules": "[not_a_module]"}, "not_a_module"),
        ({"method.name": "last_layers", "method.layers": 9}, "only 2 blocks"),
    ],
)
def test_options_that_do_not_fit_the_model_are_clear_errors(
    tiny_llama, tmp_path, prompt_completion_file, options, message
):
    with pytest.raises(UserError, match=message):
        train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **options), progress=False)


def test_a_lora_run_can_be_the_base_of_the_next_stage(tiny_llama, tmp_path, prompt_completion_file):
    first = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "one"), progress=False)
    second = train(training_config(first.run_dir, prompt_completion_file, tmp_path / "two"), progress=False)
    merged_first = load_causal_lm(str(first.run_dir)).merge_and_unload()
    base_of_second = second.model.unload()
    ids = torch.tensor([[1, 5, 6, 7]])
    torch.testing.assert_close(_logits(base_of_second, ids), _logits(merged_first.eval(), ids), atol=1e-5, rtol=1e-5)
