"""``tunelab merge``: a standalone model with the same logits as base plus adapter."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import training_config
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.inference.merge import merge_run
from tunelab.methods.loading import load_causal_lm
from tunelab.training.recipe import train


@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_gpt2"])
def test_merged_model_matches_base_plus_adapter(request, architecture, prompt_completion_file, tmp_path):
    model_folder = request.getfixturevalue(architecture)
    config = training_config(
        model_folder, prompt_completion_file, tmp_path / "run", **{"train.lr": 2e-2, "method.r": 4}
    )
    run = train(config, progress=False).run_dir
    merged_dir = merge_run(run, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = load_causal_lm(str(run)).eval()
    base = AutoModelForCausalLM.from_pretrained(model_folder).eval()
    ids = torch.tensor([[1, 11, 22, 33, 44, 55]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-4)  # the adapter did something
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_merge_refuses_a_non_run_folder_and_a_full_output(tiny_llama, prompt_completion_file, tmp_path, capsys):
    with pytest.raises(UserError, match="not a finished tunelab run"):
        merge_run(tiny_llama, tmp_path / "out")
    run = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run"), progress=False).run_dir
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert main(["merge", str(run), "--output", str(occupied)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (occupied / "keep.txt").read_text() == "mine"


def test_a_merged_chat_run_answers_through_the_chat_template_it_trained_with(tiny_llama, tmp_path):
    from conftest import write_jsonl
    from tunelab.inference.generate import generate_text, trained_on_chat

    rows = [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "cat cat"}]}
        for i in range(16)
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    # lr 1e-2: learns the answer steadily (3e-2 oscillated, and which degenerate answer it ended on
    # turned on rounding in the gradients)
    options = {"method.name": "lora", "method.r": 8, "train.max_steps": 40, "train.lr": 1e-2, "train.batch_size": 8}
    run = train(training_config(tiny_llama, data, tmp_path / "run", **options), progress=False).run_dir
    merged = merge_run(run, tmp_path / "merged")

    assert trained_on_chat(str(merged))  # the merged folder kept what the run trained on
    answer = generate_text(str(run), prompt="question 99", max_new_tokens=12)
    assert generate_text(str(merged), prompt="question 99", max_new_tokens=12) == answer
    raw = generate_text(str(merged), prompt="question 99", max_new_tokens=12, chat=False)
    assert raw != answer  # so the template is what made the difference
