"""The loop asks the method what it needs (context tokens, a task column, padding side) instead of
guessing from option names or item types; in-context strategies are not Methods."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from conftest import training_config, write_jsonl
from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.methods import registry
from tunelab.methods.base import Method
from tunelab.methods.full import FullFineTuning
from tunelab.methods.in_context import InContextStrategy
from tunelab.training.recipe import train


class LongPromptOptions(MethodOptions):
    name: Literal["long_prompt"] = "long_prompt"
    prompt_length: int = Field(16, gt=0)  # not called virtual_tokens: the loop must not depend on the name


class LongPrompt(FullFineTuning):
    """A method that says it puts ``prompt_length`` positions in front of every sequence."""

    name = "long_prompt"
    options_type = LongPromptOptions

    def extra_context_tokens(self, options: MethodOptions) -> int:
        assert isinstance(options, LongPromptOptions)
        return options.prompt_length


@pytest.fixture
def long_prompt_registered():
    registry.register(LongPrompt())
    yield
    registry._REGISTRY.pop("long_prompt", None)


def test_the_context_check_counts_the_tokens_a_method_says_it_adds(long_prompt_registered, tiny_gpt2, tmp_path):
    words = " ".join(["robot star fox dog"] * 200)
    data = write_jsonl(tmp_path / "long.jsonl", [{"text": words}] * 4)
    fits = {"data.max_length": 500, "method.name": "long_prompt", "method.prompt_length": 8}
    train(training_config(tiny_gpt2, data, tmp_path / "fits", **fits), progress=False)  # 500 + 8 <= 512
    too_long = {**fits, "method.prompt_length": 16}
    with pytest.raises(UserError, match="sequences of 516 tokens exceed the model's context of 512"):
        train(training_config(tiny_gpt2, data, tmp_path / "too-long", **too_long), progress=False)
    assert not (tmp_path / "too-long" / "summary.json").exists()


def test_prompt_methods_state_their_virtual_tokens_and_the_task_column():
    from tunelab.config.schema import parse_method_options

    methods = registry.available_methods()
    prompt = parse_method_options({"name": "prompt", "virtual_tokens": 7}, methods)
    multitask = parse_method_options({"name": "multitask_prompt", "task_column": "domain"}, methods)
    assert registry.get_method("prompt").extra_context_tokens(prompt) == 7
    assert registry.get_method("multitask_prompt").task_column(multitask) == "domain"
    lora = parse_method_options({"name": "lora"}, methods)
    assert registry.get_method("lora").extra_context_tokens(lora) == 0
    assert registry.get_method("lora").task_column(lora) is None


@pytest.mark.parametrize("name", ["zeroshot", "fewshot", "rag"])
def test_in_context_strategies_have_their_own_interface(name):
    strategy = registry.get_method(name)
    assert isinstance(strategy, InContextStrategy) and not isinstance(strategy, Method)
    assert not hasattr(strategy, "prepare") and not hasattr(strategy, "save_artifact")


def test_every_trained_method_is_a_method():
    trained = [m for m in registry.available_methods().values() if not isinstance(m, InContextStrategy)]
    assert trained and all(isinstance(method, Method) for method in trained)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="fp16 is allowed where CUDA is present")
def test_an_in_context_run_still_checks_its_precision(tiny_llama, prompt_completion_file, tmp_path):
    """zeroshot does not go through the training loop, but train.precision is checked for it all the same."""
    config = training_config(
        tiny_llama,
        prompt_completion_file,
        tmp_path / "run",
        **{"method.name": "zeroshot", "data.eval": prompt_completion_file, "train.precision": "fp16"},
    )
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        train(config, progress=False)
    assert not (tmp_path / "run" / "summary.json").exists()
