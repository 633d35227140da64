"""``tunelab methods --model``: an encoder is counted as the classifier it is for, every method gets a
count or a one-line reason, and nothing crashes (it used to, inside PEFT, for MiniLM)."""

from __future__ import annotations

import pytest

from tunelab.cli.main import main
from tunelab.methods.listing import default_task, list_methods


def test_an_encoder_is_counted_as_a_classifier_and_a_decoder_as_a_language_model(tiny_bert, tiny_llama):
    assert default_task(str(tiny_bert)) == "classification"
    assert default_task(str(tiny_llama)) == "causal_lm"


def test_every_method_on_an_encoder_has_a_count_or_a_reason(tiny_bert):
    pytest.importorskip("bitsandbytes", reason="qlora needs the quant extra (bitsandbytes)")
    listings = {item.name: item for item in list_methods(str(tiny_bert))}
    for name in ("full", "last_layers", "lora", "dora", "qlora", "adalora", "ia3", "adapter", "features"):
        assert listings[name].trainable_params and 0 < listings[name].trainable_pct <= 100, listings[name]
    assert listings["full"].trainable_pct == 100
    # qlora trains exactly what lora trains: its classification head stays out of quantisation
    assert listings["qlora"].trainable_params == listings["lora"].trainable_params
    for name in ("multitask_prompt", "llama_adapter"):
        assert listings[name].trainable_params is None
        assert listings[name].note == "trains causal_lm only, not classification"


def test_the_command_says_which_task_it_counted_for(tiny_bert, capsys):
    assert main(["methods", "--model", str(tiny_bert), "--task", "classification"]) == 0
    output = capsys.readouterr().out
    assert f"counted on {tiny_bert} for classification" in output
    assert "n/a: trains causal_lm only, not classification" in output
