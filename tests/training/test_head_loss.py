"""The language-model loss from the hidden states at the target positions, head and cross-entropy in
chunks (training/head_loss.py), equals the plain loss over the full logits, and so do its gradients,
for Llama and GPT-2, a PEFT-wrapped model and one with prepended virtual tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunelab.data.collate import Batch
from tunelab.data.tokenize import IGNORE_INDEX
from tunelab.methods.base import Method
from tunelab.methods.registry import get_method
from tunelab.training import head_loss
from tunelab.training.head_loss import supports_head_loss
from tunelab.training.loss import summed_loss
from tunelab.training.steps import batch_logits, batch_loss


def lm_batch(vocab: int) -> Batch:
    """Two rows; the first half of each is prompt (no loss), the second row padded at its end."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 12), generator=generator)
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX
    mask = torch.ones_like(ids)
    mask[1, 9:], labels[1, 9:] = 0, IGNORE_INDEX
    return Batch({"input_ids": ids, "attention_mask": mask, "use_cache": False}, labels, int(mask.sum()))


def loss_and_gradients(model, method: Method, batch: Batch, chunked: bool) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss = (
        batch_loss(model, method, batch) if chunked else summed_loss(batch_logits(model, method, batch), batch.labels)
    )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(head_loss, "CHUNK_LOGITS", 400 * 3)  # three rows per chunk: several chunks per batch


@pytest.mark.parametrize("architecture", ["tiny_llama", "tiny_gpt2"])
def test_the_chunked_loss_and_gradients_equal_the_plain_ones(request, architecture):
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(architecture))
    method = get_method("full")
    batch = lm_batch(model.config.vocab_size)
    assert supports_head_loss(model)
    plain_loss, plain_grads = loss_and_gradients(model, method, batch, chunked=False)
    loss, grads = loss_and_gradients(model, method, batch, chunked=True)
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=1e-6)
    assert grads.keys() == plain_grads.keys() and len(grads) > 5
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize(("name", "options"), [("lora", {"r": 4}), ("prompt", {"virtual_tokens": 4})])
def test_peft_models_get_the_same_loss_and_adapter_gradients(tiny_llama, name, options):
    from tunelab.methods.base import TrainingPlan

    method = get_method(name)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model = method.prepare(
        base, method.options_type(name=name, **options), TrainingPlan(model_reference=str(tiny_llama))
    )
    batch = lm_batch(base.config.vocab_size)
    plain_loss, plain_grads = loss_and_gradients(model, method, batch, chunked=False)
    loss, grads = loss_and_gradients(model, method, batch, chunked=True)
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=1e-6)
    assert grads.keys() == plain_grads.keys() and grads
    for key, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[key], atol=1e-6, rtol=1e-4, msg=key)


def test_evaluation_needs_no_gradient_and_gives_the_same_loss(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    batch = lm_batch(model.config.vocab_size)
    with torch.no_grad():
        plain = summed_loss(batch_logits(model, get_method("full"), batch), batch.labels)
        torch.testing.assert_close(batch_loss(model, get_method("full"), batch), plain, atol=1e-5, rtol=1e-6)


def test_an_architecture_with_more_than_a_head_keeps_the_plain_path(tiny_bert):
    from transformers import AutoModelForMaskedLM

    assert not supports_head_loss(AutoModelForMaskedLM.from_pretrained(tiny_bert))


def test_a_bf16_base_under_fp32_adapters_gives_the_plain_loss(tiny_llama):
    """The head runs outside the model's forward (and accelerate's autocast): a LoRA run in bf16 keeps
    a bf16 base with fp32 adapters on every linear layer, so the hidden states it gets may be fp32."""
    from tunelab.methods.base import TrainingPlan

    method = get_method("lora")
    options = method.options_type(name="lora", r=4, target_modules="all-linear")
    base = method.load_base(str(tiny_llama), "bf16")
    model = method.prepare(base, options, TrainingPlan(model_reference=str(tiny_llama)))
    base.model.norm.float()  # fp32 hidden states over a bf16 head, as SmolLM2's LoRA bf16 run handed the head
    batch = lm_batch(model.config.vocab_size)
    model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)  # as accelerate.prepare does
    with torch.no_grad():
        plain = summed_loss(batch_logits(model, method, batch), batch.labels)
        chunked = batch_loss(model, method, batch)  # its head runs outside the forward, as in the loop
    torch.testing.assert_close(chunked, plain, atol=2e-2 * float(plain), rtol=0)  # bf16 precision


def test_a_plain_head_gets_its_gradients_without_recomputing_any_logits(monkeypatch):
    """The fused path (gradients in the forward pass): a head with a bias, several chunks, the
    same loss and gradients as autograd through the full logits, and no checkpoint recomputation."""
    monkeypatch.setattr(head_loss, "checkpoint", lambda *args, **kwargs: pytest.fail("recomputed a chunk"))
    generator = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 400)
    hidden = torch.randn(2, 12, 16, generator=generator, requires_grad=True)
    labels = torch.randint(0, 400, (2, 12), generator=generator)
    labels[:, :5] = IGNORE_INDEX
    loss = head_loss.summed_head_loss(hidden, labels, head)
    (2.5 * loss).backward()  # the incoming gradient scales every one
    fused = [hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()]
    hidden.grad = head.weight.grad = head.bias.grad = None
    logits = head(hidden[:, :-1])
    plain = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 400), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    (2.5 * plain).backward()
    torch.testing.assert_close(loss, plain)
    for got, expected in zip(fused, [hidden.grad, head.weight.grad, head.bias.grad], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_in_a_bf16_run_a_head_with_fp32_weights_computes_in_bf16(tiny_llama, monkeypatch):
    """Full fine-tuning keeps fp32 weights under bf16 autocast; the chunked head runs outside the
    model's forward, and in training and evaluation it computes in bf16 like every other layer."""
    from tunelab.training.accelerator import new_accelerator
    from tunelab.training.evaluation import evaluate
    from tunelab.training.steps import accumulate

    accelerator = new_accelerator("bf16")
    model = accelerator.prepare(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32))
    method, batch = get_method("full"), lm_batch(model.config.vocab_size)
    head_dtypes = []
    linear = torch.nn.functional.linear

    def recording_linear(inputs, weight, bias=None):
        output = linear(inputs, weight, bias)
        if weight is model.get_output_embeddings().weight:
            head_dtypes.append(output.dtype)
        return output

    monkeypatch.setattr(torch.nn.functional, "linear", recording_linear)
    loss, _ = accumulate(model, method, [batch], accelerator)
    evaluation = evaluate(model, [0], 2, lambda _: batch, method, accelerator)
    assert len(head_dtypes) >= 4 and set(head_dtypes) == {torch.bfloat16}  # the model's own and the chunked head
    assert model.get_output_embeddings().weight.grad.dtype == torch.float32  # the weights' own dtype
    assert abs(evaluation.loss * int((batch.labels[:, 1:] != IGNORE_INDEX).sum()) - loss) < 2e-2 * loss


def test_the_models_own_head_gets_one_contiguous_position(tiny_llama):
    """transformers' logits_to_keep=1 hands its head a strided slice, whose product in bf16 on a CPU
    copies the head's weight once per row; the body's pass gets an index instead: one contiguous row."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    batch = lm_batch(model.config.vocab_size)
    hidden = head_loss.final_hidden_states(model, batch.model_inputs)
    assert hidden.shape[:2] == batch.labels.shape
    assert [tuple(x.shape) for x in seen] == [(2, 1, model.config.hidden_size)] and seen[0].is_contiguous()


def test_in_a_bf16_run_the_body_hands_over_its_last_hidden_states_alone(tiny_llama):
    """accelerate turns every output of a bf16 forward pass to fp32: asked for with
    output_hidden_states, that is every layer's hidden states, copied to keep one."""
    from tunelab.training.accelerator import new_accelerator

    accelerator = new_accelerator("bf16")
    model = accelerator.prepare(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16))
    batch = lm_batch(model.config.vocab_size)
    hidden = head_loss.final_hidden_states(model, batch.model_inputs)
    every_layer = model(**batch.model_inputs, output_hidden_states=True).hidden_states
    assert all(state.dtype == torch.float32 for state in every_layer)  # what accelerate does to outputs
    assert hidden.dtype == torch.bfloat16 and torch.equal(hidden.float(), every_layer[-1])


def test_a_compiled_model_is_seen_through_its_wrappers(tiny_llama):
    """A hook added on every call would make a compiled model compile again: the compiled keep
    output_hidden_states, whether train.compile compiled in place or accelerate wrapped the model."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=2, target_modules=["q_proj"]))
    assert not head_loss.is_compiled(model)
    assert head_loss.is_compiled(torch.compile(model))  # accelerate's dynamo_backend: an OptimizedModule
    model.compile()  # train.compile: in place
    assert head_loss.is_compiled(model)
