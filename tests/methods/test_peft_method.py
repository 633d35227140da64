"""The generic ``peft`` method (``method.name=peft method.type=...``): its options are checked against
the PEFT type's own config class in one-line errors before anything loads, the defaults it fills in
are recorded, lora / dora / ia3 are the same PEFT configs under their own names, a classifier on
BERT trains, reloads and merges, and what PEFT cannot do (GPT-2's Conv1D for LoHa, merging Lily) is
one line.

Training, reloading and merging each type on the tiny Llama and GPT-2 are rows of the method matrix
(test_method_matrix.py: ``peft-loha``, ``peft-vera``, ...).
"""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import training_config
from tunelab.cli.main import EXIT_USAGE, main
from tunelab.errors import UserError
from tunelab.methods.base import TrainingPlan
from tunelab.methods.config_loading import load_config
from tunelab.training.recipe import train


def config_for(*overrides: str):
    return load_config(None, ["model=./m", "method.name=peft", *overrides])


def config_error(*overrides: str) -> str:
    with pytest.raises(UserError) as caught:
        config_for(*overrides)
    return str(caught.value)


def error_line(capsys) -> str:
    """The single ``error:`` line the CLI printed (and nothing else on stderr)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture()
def train_argv(tiny_llama, prompt_completion_file, tmp_path):
    return [
        "train",
        "--quiet",
        f"model={tiny_llama}",
        f"data.train={prompt_completion_file}",
        f"output_dir={tmp_path / 'out'}",
        "train.max_steps=2",
        "method.name=peft",
    ]


def test_an_unknown_option_is_one_line_naming_the_type_and_its_options(train_argv, tmp_path, capsys):
    assert main([*train_argv, "method.type=loha", "method.rank=4"]) == EXIT_USAGE
    line = error_line(capsys)
    assert line.startswith("error: config error: method.rank: loha has no option 'rank'; its options: alpha, ")
    assert ", r, " in line and "task_type" not in line  # PEFT's LoHaConfig fields, less what tunelab sets
    assert not (tmp_path / "out").exists()


def test_an_unknown_type_is_one_line_listing_the_known_ones(train_argv, tmp_path, capsys):
    assert main([*train_argv, "method.type=lohaa"]) == EXIT_USAGE
    line = error_line(capsys)
    assert line.startswith("error: config error: method.type: unknown PEFT type 'lohaa'; known: ")
    assert all(f" {kind}," in line for kind in ("boft", "fourierft", "ia3", "loha", "lokr", "lora", "oft"))
    assert "prompt_tuning" not in line  # known to PEFT, but another method's (below)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kind", "method"),
    [("prompt_tuning", "prompt"), ("prefix_tuning", "prefix"), ("p_tuning", "ptuning"),
     ("multitask_prompt_tuning", "multitask_prompt"), ("adaption_prompt", "llama_adapter"), ("adalora", "adalora")],
)  # fmt: skip
def test_types_another_method_trains_are_refused_naming_it(kind, method):
    message = config_error(f"method.type={kind}")
    assert message.startswith(f"config error: method.type: {kind} is trained by method.name={method} (")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["method.type=loha", "method.r=abc"], "config error: method.r: Input should be a valid integer"),
        (["method.type=ia3", "method.task_type=SEQ_CLS"], "config error: method.task_type: not an option: "),
        # PEFT's own check of the values together, before any model loads
        (["method.type=boft", "method.boft_block_num=2"], "config error: method.boft_block_num: boft: You can only"),
        (["method.type=cpt"], "config error: method.type: cpt is prompt learning, which method peft does not"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(overrides, expected):
    assert config_error(*overrides).startswith(expected)


def test_the_options_and_the_defaults_filled_in_are_recorded_and_read_back(tmp_path):
    config = config_for("method.type=LoHa", "method.r=4", "method.module_dropout=0.1")
    assert config.method.type == "loha"
    assert config.method.tuner_options() == {"target_modules": "all-linear", "r": 4, "module_dropout": 0.1}
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(config.to_plain()), encoding="utf-8")
    assert load_config(saved).method == config.method
    # IA3 keeps PEFT's per-architecture modules (it must know the feed-forward ones) and its learning rate
    ia3 = config_for("method.type=ia3")
    assert ia3.method.tuner_options() == {"target_modules": None, "feedforward_modules": None}
    assert (ia3.train.lr, config_for().train.lr) == (1e-2, 1e-3)


@pytest.mark.parametrize(
    ("preset", "generic"),
    [
        (["method.name=lora"], ["method.type=lora", "method.lora_alpha=16"]),
        (["method.name=dora", "method.r=4"], ["method.type=lora", "method.r=4", "method.lora_alpha=16",
                                              "method.use_dora=true"]),
        (["method.name=ia3"], ["method.type=ia3"]),
    ],
)  # fmt: skip
def test_lora_dora_and_ia3_are_presets_of_the_generic_method(preset, generic):
    from tunelab.methods.registry import get_method

    def peft_config(config):
        return get_method(config.method.name).peft_config(config.method, TrainingPlan()).to_dict()

    preset_config = load_config(None, ["model=./m", *preset])
    assert peft_config(preset_config) == peft_config(config_for(*generic))
    assert preset_config.train.lr == config_for(*generic).train.lr


def test_a_type_without_layers_for_gpt2_is_one_line(tiny_gpt2, prompt_completion_file, tmp_path):
    options = {"method.name": "peft", "method.type": "loha"}
    with pytest.raises(UserError, match=r"^method peft \(loha\): Target module .*Conv1D.* not supported"):
        train(training_config(tiny_gpt2, prompt_completion_file, tmp_path / "run", **options), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_type_peft_cannot_merge_trains_reloads_and_refuses_to_merge_in_one_line(
    tiny_llama, prompt_completion_file, tmp_path, capsys
):
    from tunelab.methods.loading import load_causal_lm

    options = {"method.name": "peft", "method.type": "lily", "train.max_steps": 2}
    result = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **options), progress=False)
    ids = torch.tensor([[1, 10, 20, 30]])
    with torch.no_grad():
        reloaded = load_causal_lm(str(result.run_dir)).eval()(input_ids=ids).logits
        torch.testing.assert_close(reloaded, result.model.eval()(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    assert main(["merge", str(result.run_dir), "--output", str(tmp_path / "merged")]) == EXIT_USAGE
    line = error_line(capsys)
    assert line.startswith("error: method peft: PEFT cannot merge a lily adapter into its base model (")
    assert line.endswith(f"load the run folder {result.run_dir} directly instead")
    assert not (tmp_path / "merged").exists()


def test_a_classifier_on_bert_trains_its_head_reloads_and_merges(tiny_bert, labelled_data, tmp_path):
    """The head (BERT's pooler included) is saved with the adapter and merges with tuners other than
    LoRA, which cannot merge around PEFT's wrapper of a module without weights of its own."""
    from transformers import AutoModelForSequenceClassification

    from tunelab.inference.merge import merge_run
    from tunelab.inference.predict import predict_labels
    from tunelab.methods.loading import load_model

    train_file, _ = labelled_data
    options = {"task": "classification", "method.name": "peft", "method.type": "loha", "train.max_steps": 3}
    result = train(training_config(tiny_bert, train_file, tmp_path / "run", **options), progress=False)
    saved_to = result.model.peft_config["default"].modules_to_save
    assert {"classifier", "pooler.dense"} <= set(saved_to)
    batch = {"input_ids": torch.tensor([[2, 10, 20, 30, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        expected = result.model.eval()(**batch).logits
        torch.testing.assert_close(
            load_model(str(result.run_dir)).eval()(**batch).logits, expected, atol=1e-5, rtol=1e-5
        )
        merged = AutoModelForSequenceClassification.from_pretrained(merge_run(result.run_dir, tmp_path / "merged"))
        torch.testing.assert_close(merged.eval()(**batch).logits, expected, atol=1e-5, rtol=1e-5)
    predictions = predict_labels(str(result.run_dir), ["it was great"])
    assert predictions and predictions[0].label in result.summary["labels"]


def test_tunelab_methods_lists_peft(capsys):
    assert main(["methods"]) == 0
    assert "peft              any PEFT tuner by method.type" in capsys.readouterr().out
