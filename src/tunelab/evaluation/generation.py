"""Batched generation for evaluation: prompts padded on the left, greedy by default, stopped at EOS.

transformers generates and stops each row at EOS; what is ours is the batching (longest prompts
first, so a batch wastes little padding), stopping each row as soon as its answer holds a stop
string, cutting the answer there, and decoding only the new tokens. transformers' own
``stop_strings`` would not do: it matches across the prompt's end, so a prompt ending in a newline
and an answer starting with one already "contain" a blank line, and every answer came back empty. A
model whose answers do not end in EOS (an untrained base) would otherwise run on into a made-up next
turn; the stop strings end the answer where the next turn would begin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from transformers import StoppingCriteria, StoppingCriteriaList

from tunelab.inference.generate import stop_token_ids

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

# Where an answer ends when no EOS comes: tunelab's default chat layout's next section, or the
# blank line between plain-text examples.
CHAT_STOP_STRINGS = ("\n### ",)
RAW_STOP_STRINGS = ("\n\n",)


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    end = min((text.find(stop) for stop in stops if stop in text), default=len(text))
    return text[:end].strip()


class AnswerStopped(StoppingCriteria):
    """True for each row whose generated text (after the prompt) holds a stop string."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_width: int, stops: Sequence[str]) -> None:
        self.tokenizer, self.prompt_width, self.stops = tokenizer, prompt_width, tuple(stops)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        import torch

        answers = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        done = [any(stop in answer for stop in self.stops) for answer in answers]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def generate_answers(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    max_new_tokens: int = 128,
    batch_size: int = 8,
    stops: Sequence[str] = (),
    progress: bool = False,
) -> list[str]:
    """The greedy answer to every prompt (token ids), in the prompts' order."""
    import torch
    from tqdm.auto import tqdm

    from tunelab.data.collate import padding_id

    device = next(model.parameters()).device
    eos = stop_token_ids(tokenizer, model)
    pad_id = padding_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    answers: list[str] = [""] * len(prompts)
    model.eval()
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, disable=not progress, desc="generate", unit="batch", dynamic_ncols=True):
        chosen = order[start : start + batch_size]
        width = max(len(prompts[index]) for index in chosen)
        ids = [[pad_id] * (width - len(prompts[index])) + prompts[index] for index in chosen]
        mask = [[0] * (width - len(prompts[index])) + [1] * len(prompts[index]) for index in chosen]
        with torch.no_grad():
            output = model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=eos or None,
                pad_token_id=pad_id,
                use_cache=True,
                # a row ends as soon as its answer holds a stop string, not at max_new_tokens; the
                # batch ends when every row has, and the text is still cut at the stop below
                stopping_criteria=StoppingCriteriaList([AnswerStopped(tokenizer, width, stops)]) if stops else None,
            )
        for row, index in enumerate(chosen):
            text = tokenizer.decode(output[row, width:], skip_special_tokens=True)
            answers[index] = cut_at_stops(text, stops)
    return answers
