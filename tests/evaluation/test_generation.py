"""tunelab.evaluation.generation: answers cut at the next turn; batching with left padding changes no answer."""

from __future__ import annotations

import pytest
import torch

from tunelab.data.tokenize import encode_prompt
from tunelab.evaluation.generation import CHAT_STOP_STRINGS, RAW_STOP_STRINGS, cut_at_stops, generate_answers
from tunelab.models.loading import load_model, load_tokenizer

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


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_llama):
    return load_model(str(tiny_llama), dtype=torch.float32), load_tokenizer(str(tiny_llama))


@pytest.fixture(scope="module")
def prompts(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    prompts = [encode_prompt(tokenizer, text) for text in PROMPTS]
    assert len({len(ids) for ids in prompts}) == len(prompts)  # every batch needs left padding
    return prompts


@pytest.fixture(scope="module")
def answers_alone(model_and_tokenizer, prompts):
    model, tokenizer = model_and_tokenizer
    answers = [generate_answers(model, tokenizer, [ids], max_new_tokens=10, batch_size=1)[0] for ids in prompts]
    assert len(set(answers)) == len(answers) and all(answers)  # distinct answers: a mix-up would show
    return answers


@pytest.mark.parametrize("batch_size", [2, 8])
def test_batched_answers_equal_answers_generated_one_at_a_time(model_and_tokenizer, prompts, answers_alone, batch_size):
    model, tokenizer = model_and_tokenizer

    batched = generate_answers(model, tokenizer, prompts, max_new_tokens=10, batch_size=batch_size)

    assert batched == answers_alone  # in the prompts' order, although generated longest first


def test_answers_are_only_the_new_tokens(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = encode_prompt(tokenizer, PROMPTS[0])

    [answer] = generate_answers(model, tokenizer, [ids], max_new_tokens=6)
    with torch.no_grad():
        output = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=0)

    assert answer == tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True).strip()


def test_a_row_stops_as_soon_as_its_answer_holds_a_stop_string(model_and_tokenizer, prompts, monkeypatch):
    model, tokenizer = model_and_tokenizer
    [full] = generate_answers(model, tokenizer, [prompts[0]], max_new_tokens=30)
    words = full.split()
    assert len(words) > 4
    stop = f" {words[2]}"  # a stop the answer reaches within a few tokens
    generated = []
    generate = model.generate

    def counting_generate(**kwargs):
        output = generate(**kwargs)
        generated.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(model, "generate", counting_generate)
    [answer] = generate_answers(model, tokenizer, [prompts[0]], max_new_tokens=30, stops=(stop,))
    assert answer == cut_at_stops(full, (stop,))  # the same answer as generating on and cutting
    assert generated[0] < 30  # but generation ended there


def test_a_prompt_ending_in_half_a_stop_string_does_not_end_the_answer(model_and_tokenizer):
    from tunelab.evaluation.generation import AnswerStopped

    _, tokenizer = model_and_tokenizer
    prompt = encode_prompt(tokenizer, "Once upon a time\n")
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    stopped = AnswerStopped(tokenizer, len(prompt), ("\n\n",))
    # transformers' stop_strings match across the prompt's end: "\n" + an answer's first "\n"
    assert stopped(torch.tensor([prompt + newline]), None).tolist() == [False]
    assert stopped(torch.tensor([prompt + newline + newline]), None).tolist() == [True]
