"""What the server loads: names, one shared base per adapter type, a model of their own for the rest."""

from __future__ import annotations

import pytest

from conftest import training_config
from tunelab.errors import UserError
from tunelab.inference.generate import generate_text
from tunelab.serve.batching import Finished, GenerationJob, run_batch
from tunelab.serve.models import ServedSpec, load_served_models
from tunelab.training.recipe import train


def test_a_served_name_is_the_folder_name_or_what_name_equals_says(tmp_path):
    (tmp_path / "lora-a").mkdir()
    assert ServedSpec.parse(str(tmp_path / "lora-a")) == ServedSpec("lora-a", str(tmp_path / "lora-a"))
    assert ServedSpec.parse(f"mine={tmp_path / 'lora-a'}") == ServedSpec("mine", str(tmp_path / "lora-a"))
    assert ServedSpec.parse("smollm2") == ServedSpec("smollm2", "smollm2")


def test_two_models_under_one_name_are_refused(tiny_llama):
    with pytest.raises(UserError, match="two models are named 'same'"):
        load_served_models([f"same={tiny_llama}", f"same={tiny_llama}"])


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="folder not found"):
        load_served_models([str(tmp_path / "nowhere" / "run")])


def test_other_adapter_types_and_prompt_learning_load_their_own_model(tiny_llama, prompt_completion_file, tmp_path):
    def run(method: str):
        config = training_config(tiny_llama, prompt_completion_file, tmp_path / method, **{"method.name": method})
        return str(train(config, progress=False).run_dir)

    lora, dora, ia3, prefix = run("lora"), run("dora"), run("ia3"), run("prefix")
    served = load_served_models([lora, dora, ia3, prefix])
    assert served["lora"].loaded is served["dora"].loaded  # DoRA is a LoRA variant: same PEFT type, same base
    assert served["ia3"].loaded is not served["lora"].loaded
    assert served["prefix"].loaded is not served["lora"].loaded and served["prefix"].adapter is None
    for name, reference in (("dora", dora), ("ia3", ia3), ("prefix", prefix), ("lora", lora)):
        events: list = []
        ids = served[name].text_prompt_ids("robot say fox:")
        run_batch(served[name], [GenerationJob(name, ids, 6, events.append)])
        expected = generate_text(reference, prompt="robot say fox:", max_new_tokens=6, chat=False)
        assert [event.text for event in events if isinstance(event, Finished)] == [expected]
