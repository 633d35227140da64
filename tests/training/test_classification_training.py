"""Training with ``task: classification``: the loss goes down, the summary's metrics agree with each
other, and every method trains the classification head, leaves the base alone where it should and
reloads to the same logits, on an encoder (tiny BERT) and a decoder (tiny Llama).

Adding a method means adding a row to ``METHODS``.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from conftest import training_config
from tunelab.errors import UserError
from tunelab.methods.loading import load_model
from tunelab.methods.registry import get_method
from tunelab.training import recipe
from tunelab.training.recipe import train

LABELS = ["negative", "neutral", "positive"]
METHODS = {
    "full": {},
    "last_layers": {"method.layers": 1},
    "lora": {"method.r": 4},
    "dora": {"method.r": 4},
    "qlora": {"method.r": 4},
    "adapter": {"method.reduction_factor": 8},
    "prompt": {"method.virtual_tokens": 4},
    "prefix": {"method.virtual_tokens": 4},
    "ptuning": {"method.virtual_tokens": 4, "method.encoder_hidden_size": 16},
    "ia3": {},
    "features": {},
}
ARCHITECTURES = ["tiny_llama", "tiny_bert"]
WHOLE_MODEL = {"full", "last_layers"}
QUANTIZED = {"qlora"}  # its base is stored in 4 bits: unchanged up to quantisation (tested on its own)
MATRIX = [(method, architecture) for method in METHODS for architecture in ARCHITECTURES]
# What a classifier adds on top of its backbone, by module name: it trains under every method.
HEAD_MODULES = {"tiny_llama": {"score"}, "tiny_bert": {"classifier", "pooler"}}


@pytest.fixture(scope="module")
def trained(request, labelled_data, tmp_path_factory):
    """Train each (method, architecture) once, for 3 steps, remembering every parameter as it was
    when training started (the moment the optimizer is built), to tell what changed."""
    runs = {}

    def run(method: str, architecture: str):
        if method == "qlora":
            pytest.importorskip("bitsandbytes", reason="qlora needs the quant extra (bitsandbytes)")
        if (method, architecture) not in runs:
            model_folder = request.getfixturevalue(architecture)
            train_file, eval_file = labelled_data
            options = {
                "task": "classification",
                "data.eval": eval_file,
                "method.name": method,
                "train.max_steps": 3,
                "train.batch_size": 8,
                "train.lr": 1e-2,
                **METHODS[method],
            }
            output = tmp_path_factory.mktemp(f"{method}-{architecture}")
            initial: dict[str, torch.Tensor] = {}
            build_optimizer = recipe.build_optimizer

            def remembering_build_optimizer(model, train_config, *args, **kwargs):
                initial.update({name: p.detach().clone() for name, p in model.named_parameters()})
                return build_optimizer(model, train_config, *args, **kwargs)

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(recipe, "build_optimizer", remembering_build_optimizer)
                result = train(training_config(model_folder, train_file, output, **options), progress=False)
            runs[method, architecture] = (model_folder, result, initial)
        return runs[method, architecture]

    return run


def padded_batch(model: torch.nn.Module, pad_id: int) -> dict[str, torch.Tensor]:
    """Two texts of different lengths, padded on the side the architecture reads its label from."""
    from tunelab.data.classification import ClassificationExample
    from tunelab.data.collate import collate_classification

    encoder = model.encoder if type(model).__name__ == "FeatureClassifier" else model
    texts = [ClassificationExample([1, 10, 20, 30, 40, 50, 60], 0), ClassificationExample([1, 15, 25], 0)]
    side = get_method("full").padding_side(encoder)  # by architecture
    inputs = collate_classification(texts, pad_id, side).model_inputs
    assert inputs["attention_mask"].sum() == 10  # padded: 4 of the 14 positions
    return inputs


def logits_of(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def head_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters of the classification head (``head`` for a feature-based classifier)."""
    names = {"score", "classifier", "pooler", "head"}
    return {
        name: parameter
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and names & set(name.split("."))
    }


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The pretrained transformer under the head, through PEFT's wrapper or a feature classifier."""
    if type(model).__name__ == "FeatureClassifier":
        return model.encoder
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, model.base_model_prefix)


@pytest.mark.parametrize(("method", "architecture"), MATRIX)
def test_every_method_trains_the_head_and_finishes_with_metrics(trained, method, architecture):
    _, result, initial = trained(method, architecture)

    assert result.summary["steps"] == 3 and result.summary["task"] == "classification"
    assert result.summary["labels"] == LABELS
    assert 0 <= result.summary["accuracy"] <= 1
    head = head_parameters(result.model)
    kinds = {part for name in head for part in name.split(".")} & {"score", "classifier", "pooler", "head"}
    assert kinds == ({"head"} if method == "features" else HEAD_MODULES[architecture])
    for name, parameter in head.items():
        assert not torch.equal(parameter.detach(), initial[name]), f"{name} did not change"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_qlora_quantises_the_backbone_and_keeps_the_head_in_full_precision(trained, architecture):
    _, result, _ = trained("qlora", architecture)
    kinds = {name: type(module).__name__ for name, module in result.model.named_modules()}
    assert any(kind == "Linear4bit" for name, kind in kinds.items() if "layers" in name or "layer." in name)
    head = [name for name in kinds if set(name.split(".")) & HEAD_MODULES[architecture]]
    assert head and all(kinds[name] != "Linear4bit" for name in head), {name: kinds[name] for name in head}


@pytest.mark.parametrize(
    ("method", "architecture"), [(m, a) for m, a in MATRIX if m not in WHOLE_MODEL and m not in QUANTIZED]
)
def test_base_weights_are_unchanged(trained, method, architecture):
    model_folder, result, _ = trained(method, architecture)
    fresh = AutoModel.from_pretrained(model_folder)  # the pretrained backbone, without any head
    trained_backbone = {
        name.replace(".base_layer", ""): parameter
        for name, parameter in backbone_of(result.model).named_parameters(remove_duplicate=False)
    }
    compared = 0
    for name, parameter in fresh.named_parameters():
        if name.startswith("pooler."):  # not pretrained here: BERT's pooler is part of the new head
            continue
        counterpart = trained_backbone.get(name)
        assert counterpart is not None, f"{name} not found in the trained model"
        assert not counterpart.requires_grad, f"{name} trains"
        torch.testing.assert_close(counterpart.detach().float(), parameter.detach().float(), atol=0, rtol=0)
        compared += 1
    assert compared > 10


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_last_layers_trains_the_top_block_and_the_head_only(trained, architecture):
    from tunelab.methods.last_layers import find_transformer_blocks

    _, result, initial = trained("last_layers", architecture)
    blocks = find_transformer_blocks(result.model)
    names = {id(p): name for name, p in result.model.named_parameters()}
    top = [names[id(p)] for p in blocks[-1].parameters()]
    bottom = [names[id(p)] for p in blocks[0].parameters()]
    parameters = dict(result.model.named_parameters())
    assert all(parameters[name].requires_grad for name in top)
    assert any(not torch.equal(parameters[name].detach(), initial[name]) for name in top)
    assert all(torch.equal(parameters[name].detach(), initial[name]) for name in bottom)


@pytest.mark.parametrize(("method", "architecture"), MATRIX)
def test_reloaded_run_gives_the_trained_logits(trained, method, architecture):
    _, result, _ = trained(method, architecture)
    reloaded = load_model(str(result.run_dir)).eval()
    batch = padded_batch(reloaded, result.summary["pad_token_id"])

    expected = logits_of(result.model.eval(), batch)
    assert expected.shape == (2, len(LABELS))
    # bitsandbytes evaluates a 4-bit layer on CPU with a bf16 kernel once the layer has run in eval
    # mode (as it did for the run's evaluation), so a qlora model agrees to bf16 precision only
    tolerance = 3e-2 if method in QUANTIZED else 1e-4
    torch.testing.assert_close(logits_of(reloaded, batch), expected, atol=tolerance, rtol=tolerance)


@pytest.fixture(scope="module")
def learned(request, labelled_data, tmp_path_factory):
    """Full fine-tuning long enough to learn the give-away word (the tiny BERT learns slower)."""
    settings = {
        "tiny_llama": {"train.max_steps": 20, "train.lr": 3e-3},
        "tiny_bert": {"train.max_steps": 40, "train.lr": 3e-3},
    }
    runs = {}

    def run(architecture: str):
        if architecture not in runs:
            train_file, eval_file = labelled_data
            options = {
                "task": "classification",
                "data.eval": eval_file,
                "method.name": "full",
                "train.batch_size": 8,
                "train.scheduler": "constant",
                "train.log_every": 5,
                **settings[architecture],
            }
            output = tmp_path_factory.mktemp(f"learned-{architecture}")
            config = training_config(request.getfixturevalue(architecture), train_file, output, **options)
            runs[architecture] = train(config, progress=False)
        return runs[architecture]

    return run


def metrics_lines(result) -> list[dict]:
    return [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_full_fine_tuning_lowers_the_training_loss(learned, architecture):
    losses = [line["loss"] for line in metrics_lines(learned(architecture))]  # each over 5 steps
    assert len(losses) >= 4
    assert sum(losses[-2:]) < 0.85 * sum(losses[:2]), losses


def test_the_decoder_learns_the_give_away_word(learned):
    assert learned("tiny_llama").summary["accuracy"] > 0.6  # three balanced labels: chance is 1/3


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_summary_metrics_agree_with_each_other(learned, architecture):
    result = learned(architecture)
    summary = result.summary
    matrix = torch.tensor(summary["confusion_matrix"], dtype=torch.float64)

    assert summary["labels"] == LABELS
    assert matrix.shape == (3, 3)
    assert matrix.sum() == 30  # every evaluation text, once
    assert summary["accuracy"] == pytest.approx(float(matrix.trace() / matrix.sum()))
    f1s = []
    for index, label in enumerate(LABELS):
        scores = summary["per_class"][label]
        assert scores["support"] == matrix[index].sum() == 10  # rows are the reference labels
        assert scores["recall"] == pytest.approx(float(matrix[index, index] / matrix[index].sum()))
        predicted = matrix[:, index].sum()
        assert scores["precision"] == pytest.approx(float(matrix[index, index] / predicted) if predicted else 0.0)
        f1s.append(scores["f1"])
    assert summary["macro_f1"] == pytest.approx(sum(f1s) / 3)
    last = metrics_lines(result)[-1]
    assert last["eval_accuracy"] == pytest.approx(summary["accuracy"])
    assert last["eval_loss"] == pytest.approx(summary["eval_loss"])
    saved = json.loads((result.run_dir / "summary.json").read_text())
    assert saved["confusion_matrix"] == summary["confusion_matrix"] and saved["per_class"] == summary["per_class"]


@pytest.mark.parametrize("method", ["multitask_prompt", "llama_adapter"])
def test_methods_without_a_classifier_refuse_before_any_model_loads(
    tiny_llama, labelled_data, tmp_path, monkeypatch, method
):
    import transformers

    def no_loading(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded")

    for auto_class in ("AutoModelForSequenceClassification", "AutoModelForCausalLM", "AutoModel", "AutoTokenizer"):
        monkeypatch.setattr(getattr(transformers, auto_class), "from_pretrained", no_loading)
    config = training_config(
        tiny_llama, labelled_data[0], tmp_path / "run", **{"task": "classification", "method.name": method}
    )

    with pytest.raises(UserError, match=f"method '{method}' does not train task 'classification'"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_classification_data_format_needs_the_classification_task(tiny_llama, labelled_data, tmp_path):
    with pytest.raises(UserError, match=r"config error: .*data.format classification needs task: classification"):
        training_config(tiny_llama, labelled_data[0], tmp_path / "run", **{"data.format": "classification"})
