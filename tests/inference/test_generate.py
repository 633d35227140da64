"""``tunelab generate``: a trained run answers in its trained format and stops at EOS."""

from __future__ import annotations

import json

import pytest

from conftest import training_config, write_jsonl
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.inference.generate import generate_text
from tunelab.training.recipe import train


@pytest.fixture(scope="module")
def taught_run(tiny_llama, tmp_path_factory):
    """A tiny model fully fine-tuned until it answers every chat with ' cat cat' and EOS."""
    folder = tmp_path_factory.mktemp("taught")
    rows = [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "cat cat"}]}
        for i in range(16)
    ]
    data = write_jsonl(folder / "chat.jsonl", rows)
    config = training_config(
        tiny_llama,
        data,
        folder / "run",
        **{"method.name": "full", "train.max_steps": 60, "train.lr": 5e-3, "train.batch_size": 8},
    )
    return train(config, progress=False).run_dir


def test_generation_stops_at_eos_with_the_kv_cache(taught_run):
    assert json.loads((taught_run / "summary.json").read_text())["data_format"] == "chat"
    answer = generate_text(str(taught_run), prompt="question 99", max_new_tokens=40)
    assert answer == "cat cat"  # the chat template's EOS ended it long before 40 tokens


def test_messages_file_and_cli(taught_run, tmp_path, capsys):
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps([{"role": "user", "content": "question 3"}]))
    assert main(["generate", str(taught_run), "--messages", str(messages), "--max-new-tokens", "20"]) == 0
    assert capsys.readouterr().out.strip() == "cat cat"


def test_sampling_is_seeded(taught_run):
    first = generate_text(str(taught_run), prompt="hello", temperature=1.5, seed=7, max_new_tokens=12, chat=False)
    again = generate_text(str(taught_run), prompt="hello", temperature=1.5, seed=7, max_new_tokens=12, chat=False)
    assert first == again


def test_lora_run_generates_through_base_plus_adapter(tiny_llama, prompt_completion_file, tmp_path):
    run = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run"), progress=False).run_dir
    text = generate_text(str(run), prompt="robot say fox:", max_new_tokens=5)
    assert isinstance(text, str)


def test_bad_messages_file_is_a_clear_error(taught_run, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"role": "user"}]')
    from tunelab.inference.generate import read_messages

    with pytest.raises(UserError, match="broken.json"):
        read_messages(broken)
