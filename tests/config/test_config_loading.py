"""Config loading: YAML file + dotted overrides -> one validated config, or one clear error line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunelab.errors import UserError
from tunelab.methods.config_loading import check_training_inputs, load_config
from tunelab.runs.run_directory import RunDirectory


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None = None, overrides: list[str] | None = None) -> str:
    with pytest.raises(UserError) as caught:
        load_config(path, overrides or [])
    message = str(caught.value)
    assert "\n" not in message, "a config error is one line"
    return message


# --- YAML file and overrides ---------------------------------------------------------------


def test_overrides_reach_nested_keys_and_win_over_the_file(tmp_path):
    config_file = write_yaml(
        tmp_path / "run.yaml",
        "model: some/model\nmethod:\n  name: lora\n  r: 4\ntrain:\n  batch_size: 2\n  max_steps: 10\n",
    )

    config = load_config(
        config_file,
        ["method.r=16", "train.max_steps=50", "data.packing=true", "method.target_modules=[q_proj,v_proj]"],
    )

    assert config.method.r == 16
    assert config.method.target_modules == ["q_proj", "v_proj"]
    assert config.train.max_steps == 50
    assert config.data.packing is True
    # what the overrides did not touch comes from the file
    assert config.model == "some/model"
    assert config.train.batch_size == 2


def test_a_later_override_wins_over_an_earlier_one():
    assert load_config(None, ["train.lr=0.1", "train.lr=0.01"]).train.lr == 0.01


def test_the_config_file_is_optional():
    config = load_config()
    assert config.model is None
    assert config.method.name == "lora"
    assert config.data.max_length == 512

    config = load_config(None, ["model=some/model", "data.train=train.jsonl"])
    assert config.model == "some/model"
    assert config.data.train == Path("train.jsonl")


def test_an_empty_config_file_means_all_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path / "empty.yaml", "")) == load_config()


@pytest.mark.parametrize("file_method", [None, "method: lora\n", "method:\n  name: lora\n"])
def test_method_name_override_switches_method(tmp_path, file_method):
    config_file = write_yaml(tmp_path / "run.yaml", file_method) if file_method else None

    config = load_config(config_file, ["method.name=full"])

    assert config.method.name == "full"
    assert not hasattr(config.method, "r"), "full fine-tuning has no LoRA options"


def test_each_method_gets_its_own_options():
    config = load_config(None, ["method.name=last_layers", "method.layers=1"])
    assert config.method.name == "last_layers"
    assert config.method.layers == 1


# --- errors: one line naming the key ---------------------------------------------------------


def test_method_option_out_of_range_is_an_error():
    message = config_error(overrides=["method.r=0"])
    assert message.startswith("config error: method")
    assert "r" in message and "greater than 0" in message


def test_option_of_another_method_names_the_key_and_the_known_options():
    message = config_error(overrides=["method.layers=3"])  # last_layers' option, default method is lora
    assert "layers" in message
    assert "unknown option for method 'lora'" in message
    assert "r, alpha, dropout, target_modules" in message


@pytest.mark.parametrize(
    ("override", "key", "value"), [("method.r=0", "method.r", "0"), ("method.alpha=abc", "method.alpha", "'abc'")]
)
def test_method_option_errors_name_the_dotted_key_and_the_value(override, key, value):
    message = config_error(overrides=[override])
    assert message.startswith(f"config error: {key}: ")
    assert value in message


def test_unknown_key_is_named():
    assert config_error(overrides=["train.batchsize=4"]) == "config error: train.batchsize: unknown key"
    assert config_error(overrides=["learning_rate=0.1"]) == "config error: learning_rate: unknown key"


def test_unknown_key_in_the_file_is_named(tmp_path):
    config_file = write_yaml(tmp_path / "run.yaml", "data:\n  train: a.jsonl\n  shuffle: true\n")
    assert config_error(config_file) == "config error: data.shuffle: unknown key"


def test_wrong_type_names_the_key_and_the_bad_value():
    message = config_error(overrides=["train.batch_size=abc"])
    assert message.startswith("config error: train.batch_size: ")
    assert "'abc'" in message


def test_unknown_method_lists_the_known_ones():
    message = config_error(overrides=["method.name=nope"])
    assert "unknown method 'nope'" in message
    assert "adalora, adapter, dora, features, fewshot, full, ia3, last_layers, llama_adapter, lora" in message


def test_prompt_overrides_keep_the_text_as_typed():
    config = load_config(None, ["model=./m", "prompt.template=Review: {text}", "prompt.system=Be: brief"])
    assert (config.prompt.template, config.prompt.system) == ("Review: {text}", "Be: brief")


def test_override_without_equals_sign_is_an_error():
    message = config_error(overrides=["train.max_steps"])
    assert "train.max_steps" in message and "key=value" in message


def test_invalid_yaml_names_the_file_and_the_line(tmp_path):
    config_file = write_yaml(tmp_path / "broken.yaml", "model: x\ntrain:\n  lr: 0.1\n  batch_size: 4: 5\n")
    message = config_error(config_file)
    assert str(config_file) in message
    assert "line 4" in message
    assert "invalid YAML" in message


def test_a_yaml_list_is_not_a_config(tmp_path):
    config_file = write_yaml(tmp_path / "list.yaml", "- model\n- data\n")
    message = config_error(config_file)
    assert str(config_file) in message and "mapping" in message


def test_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert config_error(missing) == f"config file not found: {missing}"


@pytest.mark.parametrize("name", ["2024", "0123"])
def test_a_numeric_looking_output_dir_stays_a_folder_name(name):
    assert load_config(None, [f"output_dir={name}"]).output_dir == Path(name)


# --- check_training_inputs: what a run needs beyond the schema ---------------------------------


@pytest.fixture()
def runnable_overrides(tiny_llama, prompt_completion_file) -> list[str]:
    return [f"model={tiny_llama}", f"data.train={prompt_completion_file}"]


def test_complete_inputs_pass(runnable_overrides):
    check_training_inputs(load_config(None, runnable_overrides))


def test_a_hub_id_is_not_checked_on_disk(prompt_completion_file):
    check_training_inputs(load_config(None, ["model=someone/some-model", f"data.train={prompt_completion_file}"]))


def training_input_error(overrides: list[str]) -> str:
    config = load_config(None, overrides)
    with pytest.raises(UserError) as caught:
        check_training_inputs(config)
    return str(caught.value)


def test_missing_model_is_an_error(prompt_completion_file):
    assert training_input_error([f"data.train={prompt_completion_file}"]).startswith("config error: model: required")


def test_missing_training_data_is_an_error(tiny_llama):
    assert training_input_error([f"model={tiny_llama}"]).startswith("config error: data.train: required")


@pytest.mark.parametrize("key", ["data.train", "data.eval"])
def test_data_file_not_found_names_key_and_file(runnable_overrides, tmp_path, key):
    missing = tmp_path / "missing.jsonl"
    message = training_input_error([*runnable_overrides, f"{key}={missing}"])
    assert message == f"config error: {key}: file not found: {missing}"


def test_model_folder_not_found(prompt_completion_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = training_input_error(["model=./nope", f"data.train={prompt_completion_file}"])
    assert message == "model: folder not found: ./nope"


def test_model_folder_without_config_json(prompt_completion_file, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    message = training_input_error([f"model={folder}", f"data.train={prompt_completion_file}"])
    assert str(folder) in message and "no config.json" in message


def test_model_that_is_a_file(prompt_completion_file):
    message = training_input_error([f"model={prompt_completion_file}", f"data.train={prompt_completion_file}"])
    assert "is a file, not a model folder" in message


def test_unfinished_run_folder_as_model(prompt_completion_file, tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.start(load_config().to_plain(), overwrite=False)  # config.yaml but no summary.json yet
    message = training_input_error([f"model={run.path}", f"data.train={prompt_completion_file}"])
    assert "has not finished" in message


# --- the resolved config round-trips ------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "model=some/model",
            "data.train=train.jsonl",
            "data.eval_split=0.1",
            "data.columns={prompt: question, completion: answer}",
            "data.packing=true",
            "method.r=16",
            "method.target_modules=[q_proj,v_proj]",
            "train.max_steps=50",
            "train.max_grad_norm=null",
            "output_dir=runs/exp",
        ],
        ["method.name=last_layers", "method.layers=1", "train.lr=1e-4"],
        ["method.name=full", "train.precision=bf16"],
    ],
    ids=["lora", "last_layers", "full"],
)
def test_saved_resolved_config_loads_back_equal(tmp_path, overrides):
    config = load_config(None, overrides)
    run = RunDirectory(tmp_path / "run")

    run.start(config.to_plain(), overwrite=False)  # how a run saves its config.yaml

    assert yaml.safe_load(run.config_file.read_text(encoding="utf-8")) == config.to_plain()
    assert load_config(run.config_file) == config
