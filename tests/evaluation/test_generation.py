"""tunelab.evaluation.generation: answering continuously (finished rows leave, waiting prompts join) gives
the padded batches' answers token for token (Llama, GPT-2, LoRA, LLaMA-Adapter) while finished rows stop
costing forward passes; stop strings match the answer only; what the loop cannot serve exactly goes
through the padded batches of model.generate."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from tunelab.data.tokenize import encode_prompt
from tunelab.evaluation.generation import (
    CHAT_STOP_STRINGS,
    RAW_STOP_STRINGS,
    cut_at_stops,
    generate_answers,
    greedy_config,
    padded_batch_answers,
    padded_batches_reason,
)
from tunelab.methods.loading import load_model
from tunelab.models.loading import load_tokenizer

PROMPTS = [
    "Once upon a time",
    "The quick brown fox jumps over the lazy dog while the",
    "What is the capital of France? The capital",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 and letters a b c",
    "User asks",
]


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        (' {"a": 1}\n### User:\nmore', CHAT_STOP_STRINGS, '{"a": 1}'),
        (" fox fox\n\nsay dog: dog", RAW_STOP_STRINGS, "fox fox"),
        ("one\n\ntwo\n### three", ("\n### ", "\n\n"), "one"),  # the earliest stop wins
        ("  no stop here  ", CHAT_STOP_STRINGS, "no stop here"),
        ("kept\n###User", CHAT_STOP_STRINGS, "kept\n###User"),  # not the layout's marker
        ("\n\nstarts with a stop", RAW_STOP_STRINGS, ""),
        ("anything", (), "anything"),
    ],
)
def test_cut_at_stops(text, stops, expected):
    assert cut_at_stops(text, stops) == expected


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model_and_tokenizer(request):
    folder = str(request.getfixturevalue(f"tiny_{request.param}"))
    return load_model(folder, dtype=torch.float32).eval(), load_tokenizer(folder)


@pytest.fixture(scope="module")
def llama_and_tokenizer(tiny_llama):
    return load_model(str(tiny_llama), dtype=torch.float32).eval(), load_tokenizer(str(tiny_llama))


def encoded(tokenizer) -> list[list[int]]:
    prompts = [encode_prompt(tokenizer, text) for text in PROMPTS]
    assert len({len(ids) for ids in prompts}) == len(prompts)  # every padded batch needs left padding
    return prompts


def generated_ids(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    """One prompt's greedy new tokens, alone (no padding), to EOS or max_new_tokens."""
    with torch.no_grad():
        output = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
    return output[0, len(prompt) :].tolist()


@pytest.fixture()
def early_eos(model_and_tokenizer, monkeypatch):
    """Extra EOS ids that end every answer but the longest prompt's within 2-4 tokens: the prompts
    and each answer's length in new tokens (EOS included) out of 12."""
    model, tokenizer = model_and_tokenizer
    prompts = encoded(tokenizer)
    answers = [generated_ids(model, ids, 12) for ids in prompts]
    longest = max(range(len(prompts)), key=lambda index: len(prompts[index]))
    ends = {answer[2 + index % 3] for index, answer in enumerate(answers) if index != longest}
    ends -= set(answers[longest])  # the longest prompt's answer runs to max_new_tokens
    assert ends
    eos = [tokenizer.eos_token_id, *sorted(ends)]
    monkeypatch.setattr(model.generation_config, "eos_token_id", eos)
    lengths = [next((at + 1 for at, token in enumerate(answer) if token in eos), 12) for answer in answers]
    assert min(lengths) < lengths[longest] == 12
    return prompts, lengths


@pytest.fixture()
def forward_passes():
    """``record(model)``: (rows, tokens per row, attention mask columns or None) of each later forward
    pass of ``model`` (generate() drops the mask of a batch without padding)."""
    handles = []

    def record(model) -> list[tuple[int, int, int | None]]:
        passes: list[tuple[int, int, int | None]] = []

        def note(_, args, kwargs):
            mask = kwargs.get("attention_mask")
            passes.append((*kwargs["input_ids"].shape, None if mask is None else mask.shape[-1]))

        handles.append(model.register_forward_pre_hook(note, with_kwargs=True))
        return passes

    yield record
    for handle in handles:
        handle.remove()


def decoded_rows(passes: list[tuple[int, int, int | None]]) -> list[int]:
    """The rows of each forward pass that decodes one token per row (the others take prompts)."""
    return [rows for rows, tokens, _ in passes if tokens == 1]


@pytest.fixture()
def spied_generate(llama_and_tokenizer, monkeypatch) -> list[int]:
    """The batch sizes ``model.generate`` is called with (the padded batches' path)."""
    model, _ = llama_and_tokenizer
    calls: list[int] = []
    generate = model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    return calls


def test_plain_transformers_models_are_answered_continuously(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    assert padded_batches_reason(model, greedy_config(model, tokenizer, 8)) is None


def test_answers_equal_the_padded_batches_answers_with_stop_strings(model_and_tokenizer, forward_passes):
    model, tokenizer = model_and_tokenizer
    prompts = encoded(tokenizer)
    full = padded_batch_answers(model, tokenizer, prompts, 16, 8, ())
    # stops each answer reaches at a different point, one of them never
    pieces = {answer[2 + index : 4 + index] for index, answer in enumerate(full[1:])}
    stops = tuple(sorted(piece for piece in pieces if piece.strip() and "\ufffd" not in piece))
    assert stops

    padded = padded_batch_answers(model, tokenizer, prompts, 16, 8, stops)
    passes = forward_passes(model)
    # two at a time: as one answer ends, the next prompt takes its place
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=16, batch_size=2, stops=stops)

    assert answers == padded
    assert answers != full  # the stops cut some answers
    # a newcomer's shorter prompt is padded to the batch's width; once the rows that needed the
    # columns on the left have left, those columns leave the cache too
    widths = [columns for _, tokens, columns in passes if tokens == 1]
    assert any(later < earlier for earlier, later in pairwise(widths))


def test_rows_that_end_leave_the_batch(model_and_tokenizer, early_eos, forward_passes):
    model, tokenizer = model_and_tokenizer
    prompts, lengths = early_eos
    padded = padded_batch_answers(model, tokenizer, prompts, 12, 8, ())

    passes = forward_passes(model)
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=12, batch_size=8)

    assert answers == padded
    assert passes[0][:2] == (len(prompts), max(len(ids) for ids in prompts))  # all five prompts at once
    # then one token for each row still answering: the prefill gave the first, EOS ends the rest
    assert decoded_rows(passes) == [sum(length > step for length in lengths) for step in range(1, 12)]
    assert decoded_rows(passes)[-1] == 1  # the longest prompt's answer ran on alone


def test_waiting_prompts_take_the_places_of_finished_rows(model_and_tokenizer, early_eos, forward_passes):
    model, tokenizer = model_and_tokenizer
    prompts, lengths = early_eos
    padded_passes = forward_passes(model)
    padded = padded_batch_answers(model, tokenizer, prompts, 12, 2, ())
    padded_rows = sum(decoded_rows(padded_passes))

    passes = forward_passes(model)
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=12, batch_size=2)

    assert answers == padded
    assert max(decoded_rows(passes)) == 2
    # every row decodes its answer's tokens but the first, nothing more
    assert sum(decoded_rows(passes)) == sum(length - 1 for length in lengths) < padded_rows


@pytest.fixture(scope="module")
def answers_alone(llama_and_tokenizer):
    model, tokenizer = llama_and_tokenizer
    alone = [padded_batch_answers(model, tokenizer, [ids], 10, 1, ())[0] for ids in encoded(tokenizer)]
    assert len(set(alone)) == len(alone) and all(alone)  # distinct answers: a mix-up would show
    return alone


@pytest.mark.parametrize("batch_size", [2, 8])
def test_batched_answers_equal_answers_generated_one_at_a_time(llama_and_tokenizer, answers_alone, batch_size):
    model, tokenizer = llama_and_tokenizer
    prompts = encoded(tokenizer)

    batched = generate_answers(model, tokenizer, prompts, max_new_tokens=10, batch_size=batch_size)

    assert batched == answers_alone  # in the prompts' order, although generated longest first


def test_answers_are_only_the_new_tokens(llama_and_tokenizer):
    model, tokenizer = llama_and_tokenizer
    ids = encode_prompt(tokenizer, PROMPTS[0])

    [answer] = generate_answers(model, tokenizer, [ids], max_new_tokens=6)

    assert answer == tokenizer.decode(generated_ids(model, ids, 6), skip_special_tokens=True).strip()


def test_a_row_stops_as_soon_as_its_answer_holds_a_stop_string(llama_and_tokenizer, forward_passes):
    model, tokenizer = llama_and_tokenizer
    prompt = encode_prompt(tokenizer, PROMPTS[0])
    new = generated_ids(model, prompt, 30)
    full = tokenizer.decode(new, skip_special_tokens=True)
    words = full.split()
    assert len(words) > 4
    stop = f" {words[2]}"  # a stop the answer reaches within a few tokens
    reached = next(n for n in range(1, 31) if stop in tokenizer.decode(new[:n], skip_special_tokens=True))
    passes = forward_passes(model)

    [answer] = generate_answers(model, tokenizer, [prompt], max_new_tokens=30, stops=(stop,))

    assert answer == cut_at_stops(full, (stop,))  # the same answer as generating on and cutting
    assert len(passes) == reached  # but generation ended there: the prompt, then a token a pass


def test_a_stop_string_across_the_prompts_end_does_not_end_the_answer(llama_and_tokenizer):
    model, tokenizer = llama_and_tokenizer
    prompt = encode_prompt(tokenizer, PROMPTS[2])
    raw = tokenizer.decode(generated_ids(model, prompt, 8), skip_special_tokens=True)
    across = PROMPTS[2][-4:] + raw[:2]  # the prompt's last characters, then the answer's first
    assert across not in raw

    [answer] = generate_answers(model, tokenizer, [prompt], max_new_tokens=8, stops=(across,))

    assert answer == raw.strip()


def test_the_padded_criterion_reads_the_answer_only(llama_and_tokenizer):
    from tunelab.evaluation.generation import AnswerStopped

    _, tokenizer = llama_and_tokenizer
    prompt = encode_prompt(tokenizer, "Once upon a time\n")
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    stopped = AnswerStopped(tokenizer, len(prompt), ("\n\n",))
    # transformers' stop_strings match across the prompt's end: "\n" + an answer's first "\n"
    assert stopped(torch.tensor([prompt + newline]), None).tolist() == [False]
    assert stopped(torch.tensor([prompt + newline + newline]), None).tolist() == [True]


def lora(model):
    from peft import LoraConfig, get_peft_model

    # init_lora_weights=False: a random B, so the adapter changes the answers
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def llama_adapter(model):
    from peft import AdaptionPromptConfig, get_peft_model

    adapted = get_peft_model(model, AdaptionPromptConfig(adapter_len=4, adapter_layers=2, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "adaption_gate" in name:
                parameter.fill_(1.0)  # zero-initialised: open it, so the adapter changes the answers
    return adapted


def prompt_tuning(model):
    from peft import PromptTuningConfig, get_peft_model

    return get_peft_model(model, PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"))


def prefix_tuning(model):
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"))


@pytest.mark.parametrize("wrap", [lora, llama_adapter])
def test_peft_models_that_run_the_base_model_are_answered_continuously(tiny_llama, wrap):
    base, tokenizer = load_model(str(tiny_llama), dtype=torch.float32), load_tokenizer(str(tiny_llama))
    prompts = encoded(tokenizer)
    plain = padded_batch_answers(base, tokenizer, prompts, 10, 8, ())
    torch.manual_seed(0)
    model = wrap(base).eval()
    assert padded_batches_reason(model, greedy_config(model, tokenizer, 10)) is None

    padded = padded_batch_answers(model, tokenizer, prompts, 10, 8, ())
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=10, batch_size=2)

    assert answers == padded
    assert answers != plain  # the adapter is in the answers


@pytest.mark.parametrize("wrap", [prompt_tuning, prefix_tuning])
def test_prompt_learning_goes_through_the_padded_batches(tiny_llama, wrap, monkeypatch):
    tokenizer = load_tokenizer(str(tiny_llama))
    torch.manual_seed(0)
    model = wrap(load_model(str(tiny_llama), dtype=torch.float32)).eval()
    prompts = encoded(tokenizer)
    reason = padded_batches_reason(model, greedy_config(model, tokenizer, 6))
    assert reason is not None and "virtual tokens" in reason
    expected = padded_batch_answers(model, tokenizer, prompts, 6, 8, ())
    calls = []
    generate = model.generate
    monkeypatch.setattr(
        model, "generate", lambda **kwargs: calls.append(kwargs["input_ids"].shape[0]) or generate(**kwargs)
    )

    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=6, batch_size=8)

    assert answers == expected
    assert calls == [5]  # one padded batch of all five prompts


def test_a_generation_config_with_logits_processors_goes_through_the_padded_batches(
    llama_and_tokenizer, spied_generate, monkeypatch
):
    model, tokenizer = llama_and_tokenizer
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.3)
    reason = padded_batches_reason(model, greedy_config(model, tokenizer, 8))
    assert reason is not None and "RepetitionPenalty" in reason

    generate_answers(model, tokenizer, encoded(tokenizer), max_new_tokens=8, batch_size=8)

    assert spied_generate == [5]


def test_a_sliding_window_cache_goes_through_the_padded_batches(llama_and_tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    _, tokenizer = llama_and_tokenizer
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    model = MistralForCausalLM(
        MistralConfig(**sizes, num_key_value_heads=2, vocab_size=len(tokenizer), sliding_window=8)
    )

    reason = padded_batches_reason(model, greedy_config(model, tokenizer, 8))

    assert reason is not None and "sliding window" in reason  # a joining row's padding would shift its window


def test_no_prompts_no_answers(llama_and_tokenizer):
    model, tokenizer = llama_and_tokenizer
    assert generate_answers(model, tokenizer, []) == []
