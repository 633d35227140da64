"""``adapter``: bottleneck adapters on tiny Llama, GPT-2, Qwen2, BERT and friends.

Step 0 is the base model exactly; the adapters sit where the variant says and really run; only
they train; the artifact is them alone and reloads to the same logits; generation with the KV
cache works; merging is refused; bad options are clear errors.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import make_records, training_config, write_jsonl
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.inference.generate import generate_text
from tunelab.inference.merge import merge_run
from tunelab.methods.base import TrainingPlan
from tunelab.methods.bottleneck_adapter import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AdapterHook,
    AdapterOptions,
    BottleneckAdapter,
    find_bottleneck_adapters,
)
from tunelab.methods.loading import load_causal_lm
from tunelab.training.recipe import train

VARIANTS = ["houlsby", "pfeiffer"]
ARCHITECTURES = ["tiny_llama", "tiny_gpt2"]
ADAPTERS_PER_BLOCK = {"houlsby": 2, "pfeiffer": 1}
IDS = torch.tensor([[1, 10, 20, 30, 40, 50, 60]])


@pytest.fixture(scope="module")
def trained_run(request, tmp_path_factory):
    """One 20-step run per (architecture, variant), shared by the tests that only read it."""
    runs: dict[tuple[str, str], tuple[Path, object]] = {}
    data = write_jsonl(tmp_path_factory.mktemp("adapter-data") / "train.jsonl", make_records(48))

    def get(architecture: str, variant: str):
        if (architecture, variant) not in runs:
            model_folder = request.getfixturevalue(architecture)
            options = {
                "method.name": "adapter",
                "method.variant": variant,
                "method.reduction_factor": 8,
                "train.max_steps": 20,
                "train.lr": 1e-2,
            }
            output = tmp_path_factory.mktemp(f"adapter-{architecture}-{variant}") / "run"
            runs[architecture, variant] = (
                model_folder,
                train(training_config(model_folder, data, output, **options), progress=False),
            )
        return runs[architecture, variant]

    return get


def _logits(model: torch.nn.Module, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _perturb_adapters(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every up-projection random weights, so each adapter changes what passes through it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in find_bottleneck_adapters(model).named_parameters():
            if ".up." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _tiny_model(kind: str) -> torch.nn.Module:
    """A random model of ``kind`` built from its config (no files), in eval mode."""
    from transformers import (
        AutoModel,
        BertConfig,
        GPTNeoXConfig,
        MistralConfig,
        Qwen2Config,
        Qwen3Config,
        RobertaConfig,
    )

    decoder = {
        "vocab_size": 100,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    encoder = {
        "vocab_size": 100,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    configs = {
        "qwen2": lambda: Qwen2Config(**decoder),
        "qwen3": lambda: Qwen3Config(**decoder, head_dim=8),
        "mistral": lambda: MistralConfig(**decoder),
        "bert": lambda: BertConfig(**encoder),
        "roberta": lambda: RobertaConfig(**encoder, pad_token_id=1),
        "gpt_neox": lambda: GPTNeoXConfig(**encoder),
    }
    torch.manual_seed(0)
    config = configs[kind]()
    if kind in ("qwen2", "qwen3", "mistral"):
        return AutoModelForCausalLM.from_config(config).eval()
    return AutoModel.from_config(config).eval()


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        output = model(input_ids=IDS)
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


# --- step 0, placement, architectures ------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_step_zero_logits_equal_the_base_models(request, architecture, variant):
    model_folder = request.getfixturevalue(architecture)
    base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    adapted = BottleneckAdapter().prepare(copy.deepcopy(base), AdapterOptions(variant=variant), TrainingPlan())
    assert torch.equal(_logits(adapted), _logits(base))
    _perturb_adapters(adapted)
    assert not torch.allclose(_logits(adapted), _logits(base), atol=1e-4)  # the hooks really run


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "mistral", "bert", "roberta"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_other_architectures_start_at_the_base_and_then_adapt(kind, variant):
    base = _tiny_model(kind)
    adapted = BottleneckAdapter().prepare(copy.deepcopy(base), AdapterOptions(variant=variant), TrainingPlan())
    assert torch.equal(_outputs(adapted), _outputs(base))
    _perturb_adapters(adapted)
    assert not torch.allclose(_outputs(adapted), _outputs(base), atol=1e-4)


def _hooked_modules(model: torch.nn.Module) -> set[str]:
    return {
        name
        for name, module in model.named_modules()
        if any(isinstance(hook, AdapterHook) for hook in module._forward_hooks.values())
    }


@pytest.mark.parametrize(
    ("architecture", "attention", "feed_forward"),
    [("tiny_llama", "self_attn", "mlp"), ("tiny_gpt2", "attn", "mlp")],
)
def test_houlsby_adapts_attention_and_feed_forward_and_pfeiffer_only_feed_forward(
    request, architecture, attention, feed_forward
):
    base = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(architecture))
    blocks = "model.layers" if architecture == "tiny_llama" else "transformer.h"
    houlsby = BottleneckAdapter().prepare(copy.deepcopy(base), AdapterOptions(variant="houlsby"), TrainingPlan())
    pfeiffer = BottleneckAdapter().prepare(copy.deepcopy(base), AdapterOptions(variant="pfeiffer"), TrainingPlan())
    layers = range(base.config.num_hidden_layers)
    assert _hooked_modules(houlsby) == {f"{blocks}.{i}.{site}" for i in layers for site in (attention, feed_forward)}
    assert _hooked_modules(pfeiffer) == {f"{blocks}.{i}.{feed_forward}" for i in layers}


def test_bert_adapters_sit_on_the_dense_projections_before_layer_norm():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    classifier = BertForSequenceClassification(config).eval()
    base_backbone = copy.deepcopy(classifier.bert)
    BottleneckAdapter().prepare(classifier, AdapterOptions(variant="houlsby", reduction_factor=4), TrainingPlan())
    assert _hooked_modules(classifier) == {
        f"bert.encoder.layer.{i}.{site}" for i in range(2) for site in ("attention.output.dense", "output.dense")
    }
    with torch.no_grad():
        assert torch.equal(classifier.bert(IDS).last_hidden_state, base_backbone(IDS).last_hidden_state)
    head = {f"{module}.{kind}" for module in ("bert.pooler.dense", "classifier") for kind in ("weight", "bias")}
    assert {name for name, p in classifier.named_parameters() if p.requires_grad} == head | {
        f"bert.encoder.layer.{i}.bottleneck_adapters.{position}.{projection}.{kind}"
        for i in range(2)
        for position in ("attention", "feed_forward")
        for projection in ("down", "up")
        for kind in ("weight", "bias")
    }  # a classifier's head (and BERT's pooler) trains with the adapters


def test_an_artifact_fits_the_same_backbone_under_another_head(tmp_path):
    """Trained on BertForSequenceClassification, loaded onto a plain BertModel: same hidden states."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    classifier = BertForSequenceClassification(config).eval()
    backbone = copy.deepcopy(classifier.bert)
    method = BottleneckAdapter()
    method.prepare(classifier, AdapterOptions(variant="pfeiffer", activation="gelu"), TrainingPlan())
    _perturb_adapters(classifier)
    method.save_artifact(classifier, tmp_path, "tiny-bert")
    loaded = method.load_artifact(backbone, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(IDS).last_hidden_state, classifier.bert(IDS).last_hidden_state)
    assert json.loads((tmp_path / CONFIG_FILE).read_text()) == {
        "variant": "pfeiffer",
        "reduction_factor": 16,
        "activation": "gelu",
        "base_model_name_or_path": "tiny-bert",
    }


def test_a_deep_copy_runs_its_own_adapters(tiny_llama):
    adapted = BottleneckAdapter().prepare(
        AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AdapterOptions(), TrainingPlan()
    )
    _perturb_adapters(adapted)
    duplicate = copy.deepcopy(adapted)
    torch.testing.assert_close(_logits(duplicate), _logits(adapted))
    with torch.no_grad():
        for parameter in find_bottleneck_adapters(duplicate).parameters():
            parameter.zero_()
    assert not torch.allclose(_logits(duplicate), _logits(adapted), atol=1e-4)  # the copy's hooks use the copy's


def test_an_unsupported_architecture_is_a_clear_error():
    with pytest.raises(UserError, match=r"'gpt_neox' is not supported \(supported: .*llama"):
        BottleneckAdapter().prepare(_tiny_model("gpt_neox"), AdapterOptions(), TrainingPlan())


# --- training, artifact, reload -------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_lowers_the_loss_and_leaves_the_base_untouched(trained_run, architecture, variant):
    model_folder, result = trained_run(architecture, variant)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20
    # A modest drop: the tiny models' output heads are random and frozen, which bounds how far any
    # adapter can move the logits (LoRA without the head is bounded the same way).
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1
    assert losses[-1] < losses[0] - 0.15
    base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).state_dict()
    trained = result.model.state_dict()
    assert all(torch.equal(base[name], trained[name]) for name in base)
    assert all("bottleneck_adapters" in name for name in set(trained) - set(base))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_trainable_params_match_the_formula_and_the_artifact_holds_only_them(trained_run, architecture, variant):
    model_folder, result = trained_run(architecture, variant)
    config = AutoModelForCausalLM.from_pretrained(model_folder).config
    hidden, bottleneck = config.hidden_size, config.hidden_size // 8
    per_adapter = 2 * hidden * bottleneck + bottleneck + hidden
    expected = per_adapter * ADAPTERS_PER_BLOCK[variant] * config.num_hidden_layers
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["method"] == "adapter"
    assert summary["trainable_params"] == expected
    saved = load_file(result.run_dir / WEIGHTS_FILE)
    assert sum(tensor.numel() for tensor in saved.values()) == expected
    assert not (result.run_dir / "model.safetensors").exists()
    assert json.loads((result.run_dir / CONFIG_FILE).read_text()) == {
        "variant": variant,
        "reduction_factor": 8,
        "activation": "relu",
        "base_model_name_or_path": str(model_folder),
    }


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_artifact_reloads_to_identical_logits(trained_run, architecture, variant):
    model_folder, result = trained_run(architecture, variant)
    reloaded = load_causal_lm(str(result.run_dir)).eval()
    torch.testing.assert_close(_logits(reloaded), _logits(result.model.eval()), atol=1e-5, rtol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(model_folder).eval()
    assert not torch.allclose(_logits(reloaded), _logits(base), atol=1e-4)  # the adapters did something
    assert not any(parameter.requires_grad for parameter in reloaded.parameters())


def test_a_tampered_artifact_is_refused(trained_run, tmp_path):
    model_folder, result = trained_run("tiny_llama", "houlsby")
    weights = load_file(result.run_dir / WEIGHTS_FILE)
    weights.pop(next(iter(weights)))
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / CONFIG_FILE).write_text((result.run_dir / CONFIG_FILE).read_text())
    from safetensors.torch import save_file

    save_file(weights, artifact / WEIGHTS_FILE)
    base = AutoModelForCausalLM.from_pretrained(model_folder)
    with pytest.raises(UserError, match="does not fit"):
        BottleneckAdapter().load_artifact(base, artifact)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_generation_works_with_and_agrees_without_the_kv_cache(trained_run, architecture):
    _, result = trained_run(architecture, "houlsby")
    text = generate_text(str(result.run_dir), prompt="robot fox say star:", max_new_tokens=8)
    assert isinstance(text, str)
    model = load_causal_lm(str(result.run_dir)).eval()
    prompt = IDS[:, :4]
    settings = {"max_new_tokens": 8, "do_sample": False, "min_new_tokens": 8, "pad_token_id": 0}
    with torch.no_grad():
        cached = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), use_cache=True, **settings)
        uncached = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), use_cache=False, **settings)
    assert torch.equal(cached, uncached)


def test_merging_is_refused(trained_run, tmp_path, capsys):
    _, result = trained_run("tiny_llama", "pfeiffer")
    with pytest.raises(UserError, match="cannot be merged"):
        merge_run(result.run_dir, tmp_path / "merged")
    with pytest.raises(UserError, match="cannot be merged"):
        BottleneckAdapter().merge(result.model, result.run_dir)
    assert main(["merge", str(result.run_dir), "--output", str(tmp_path / "merged")]) == 2
    assert "cannot be merged" in capsys.readouterr().err


def test_gradient_checkpointing_gives_the_same_losses(tiny_llama, prompt_completion_file, tmp_path):
    options = {"method.name": "adapter", "train.lr": 1e-2}
    plain = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "a", **options), progress=False)
    options["train.gradient_checkpointing"] = True
    checkpointed = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "b", **options), progress=False)
    losses = [
        [json.loads(line)["loss"] for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
        for run in (plain, checkpointed)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


# --- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method.reduction_factor": 0}, r"method\.reduction_factor: .*greater than 0"),
        ({"method.variant": "lorafied"}, r"method\.variant: .*'houlsby' or 'pfeiffer'"),
        ({"method.activation": "softmax"}, r"method\.activation"),
        ({"method.rank": 4}, r"method\.rank: unknown option"),
    ],
)
def test_bad_options_are_config_errors(tiny_llama, prompt_completion_file, tmp_path, options, message):
    with pytest.raises(UserError, match=rf"config error: {message}"):
        training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **{"method.name": "adapter", **options})


def test_a_reduction_factor_above_the_hidden_size_is_a_clear_error(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama,
        prompt_completion_file,
        tmp_path / "run",
        **{"method.name": "adapter", "method.reduction_factor": 65},
    )
    with pytest.raises(UserError, match="reduction_factor=65 leaves no bottleneck for hidden size 64"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder was touched
