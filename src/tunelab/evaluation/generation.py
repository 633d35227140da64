"""Greedy answers for evaluation: each prompt's new tokens, stopped at EOS or at a stop string.

A batch of ``model.generate`` runs until its last row ends: one long answer keeps the finished rows
decoding padding. Here a row that ends leaves the batch at once and the next prompt (longest
first) takes its place, so every forward pass decodes live rows only (``continuous_answers``). The
model sees what ``generate`` gives it (prompts padded on the left, positions counted along the
attention mask, a ``DynamicCache``, the last position's logits, the largest taken), only fewer
rows, and a newcomer's cache joins the batch's padded on the left, so the answers are
``generate``'s token for token as far as batching ever keeps them: a row's logits can differ in
their last bits with the rows beside it, as between ``generate``'s own batches.

Why a loop of our own rather than transformers' continuous batching (``generate_batch``,
``ContinuousBatchingManager``): it runs on the CPU and gives the same tokens, but without a flash
attention kernel (none on the CPU) its paged attention packs every row into one sequence under a
dense mask, so each step attends over all rows' caches at once, a cost that grows with the rows
squared times the context. It pays off on short prompts; on three-shot SNIPS-to-JSON prompts (~250
tokens, SmolLM2-135M-Instruct, batches of 8, 2 CPU cores) it ran at x0.82 the speed of plain
``generate`` where this loop runs at x1.35 (``bench/eval_generation.py --transformers``). Its
requests also stop only at EOS or ``max_new_tokens``, not at a stop string.

What the loop cannot serve exactly goes through padded batches of ``model.generate``, stopped row
by row with ``AnswerStopped`` (``padded_batches_reason`` says why): prompt learning (prompt, prefix
and P-tuning add virtual tokens in ``PeftModel.forward``), PEFT types whose forward needs more than
the model's inputs (X-LoRA, Poly, activated LoRA), a generation config that adds logits processors
(a repetition penalty), beam search or stop strings of its own, caches other than full-attention
``DynamicCache`` layers (sliding windows), and models without position ids.

Stop strings are matched on the answer only. transformers' own ``stop_strings`` would not do: they
match across the prompt's end, so a prompt ending in a newline and an answer starting with one
already "contain" a blank line, and every answer came back empty. A model whose answers do not end
in EOS (an untrained base) would otherwise run on into a made-up next turn; the stop strings end
the answer where the next turn would begin.
"""

from __future__ import annotations

import copy
import inspect
import logging
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from transformers import StoppingCriteria, StoppingCriteriaList

from tunelab.inference.generate import GREEDY, stop_token_ids

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import DynamicCache, GenerationConfig, PreTrainedTokenizerBase

log = logging.getLogger("tunelab")

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
    """The greedy answer to every prompt (token ids), in the prompts' order.

    At most ``batch_size`` prompts are answered at once; each answer ends at EOS, after
    ``max_new_tokens`` or as soon as it holds one of ``stops`` (and is cut there).
    """
    from tqdm.auto import tqdm

    if not prompts:
        return []
    model.eval()
    reason = padded_batches_reason(model, greedy_config(model, tokenizer, max_new_tokens))
    if reason is not None:
        log.debug("generating in padded batches: %s", reason)
    bar = tqdm(total=len(prompts), disable=not progress, desc="generate", unit="answer", dynamic_ncols=True)
    with bar:
        answer = padded_batch_answers if reason is not None else continuous_answers
        return answer(model, tokenizer, prompts, max_new_tokens, batch_size, stops, bar.update)


def greedy_config(model: nn.Module, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int) -> GenerationConfig:
    """The model's generation config with greedy decoding, as ``model.generate`` merges it."""
    from transformers import GenerationConfig

    from tunelab.data.collate import padding_id

    own = getattr(model, "generation_config", None)
    config = copy.deepcopy(own) if isinstance(own, GenerationConfig) else GenerationConfig()
    eos = stop_token_ids(tokenizer, model)
    config.update(**GREEDY, max_new_tokens=max_new_tokens, eos_token_id=eos or None, pad_token_id=padding_id(tokenizer))
    return config


def padded_batches_reason(model: nn.Module, config: GenerationConfig) -> str | None:
    """Why ``continuous_answers`` cannot give this model's greedy answers exactly; None where it can."""
    from transformers import DynamicCache, PreTrainedModel
    from transformers.cache_utils import DynamicLayer
    from transformers.generation.configuration_utils import GenerationMode

    inner, reason = _model_the_forward_runs(model)
    if reason is not None:
        return reason
    if not isinstance(inner, PreTrainedModel) or getattr(inner.config, "is_encoder_decoder", False):
        return f"{type(inner).__name__} is not a transformers decoder"
    if "position_ids" not in inspect.signature(inner.forward).parameters:
        return f"{type(inner).__name__} takes no position ids"
    if not inner._supports_default_dynamic_cache():
        return f"{type(inner).__name__} keeps a cache of its own"
    layers = DynamicCache(config=inner.config).layers
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return "its cache has layers other than full attention (a sliding window)"
    if (mode := config.get_generation_mode()) != GenerationMode.GREEDY_SEARCH:
        return f"its generation config asks for {mode.value.replace('_', ' ')}"
    if config.cache_implementation not in (None, "dynamic"):
        return f"its generation config asks for a {config.cache_implementation} cache"
    if config.stop_strings or config.max_time:
        return "its generation config sets stop strings or a time limit of its own"
    # what generate() applies to the logits besides taking the largest one
    processors = inner._get_logits_processor(config)
    if len(processors):
        return f"its generation config adds {', '.join(type(processor).__name__ for processor in processors)}"
    return None


def _model_the_forward_runs(model: nn.Module) -> tuple[nn.Module, str | None]:
    """The transformers model a PEFT model runs, or why its forward is more than that model's."""
    if "peft" not in sys.modules:  # no PEFT model without PEFT imported; importing it takes seconds
        return model, None
    from peft import PeftModel
    from peft.utils import PeftType

    if not isinstance(model, PeftModel):
        return model, None
    adapter = model.active_peft_config
    if adapter.is_prompt_learning:
        return model, f"PEFT {adapter.peft_type.value} adds virtual tokens in PeftModel's forward"
    if adapter.peft_type in (PeftType.XLORA, PeftType.POLY):
        return model, f"PEFT {adapter.peft_type.value}'s forward takes more than the model's inputs"
    if getattr(adapter, "alora_invocation_tokens", None):
        return model, "activated LoRA finds its invocation tokens in PeftModel's forward"
    return model.get_base_model(), None


def continuous_answers(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    stops: Sequence[str],
    answered: Callable[[], object] = lambda: None,
) -> list[str]:
    """Greedy answers where a finished row leaves the batch and the next prompt takes its place.

    Only for a model ``padded_batches_reason`` accepts. Each step is one forward pass: either the
    prompts that join (padded on the left, as ``generate`` pads a batch) or one token for every
    row still answering, whose cache (``DynamicCache``) the model extends.
    """
    import torch

    from tunelab.data.collate import padding_id

    inner, _ = _model_the_forward_runs(model)
    device = next(model.parameters()).device
    ends = set(stop_token_ids(tokenizer, model))
    pad = padding_id(tokenizer)
    extra = {"use_cache": True}
    if "logits_to_keep" in inspect.signature(inner.forward).parameters:
        extra["logits_to_keep"] = 1  # as generate() does: the next token needs the last position only
    waiting = deque(sorted(range(len(prompts)), key=lambda index: -len(prompts[index])))
    answers: list[str] = [""] * len(prompts)
    rows: list[int] = []  # the prompt each batch row answers
    tokens: list[list[int]] = []  # each row's new tokens; the last one is not in the cache yet
    cache: DynamicCache | None = None
    mask = torch.zeros((0, 0), dtype=torch.long, device=device)  # the cache's columns, per row

    with torch.no_grad():
        while waiting or rows:
            if waiting and len(rows) < batch_size:
                joining = [waiting.popleft() for _ in range(min(batch_size - len(rows), len(waiting)))]
                joined_cache, joined_mask, first = _prefill(model, inner, [prompts[i] for i in joining], pad, extra)
                cache, mask = _joined(cache, mask, joined_cache, joined_mask)
                rows, tokens = rows + joining, tokens + [[token] for token in first]
            else:
                latest = torch.tensor([row_tokens[-1:] for row_tokens in tokens], device=device)
                positions = torch.tensor(
                    [[len(prompts[row]) + len(row_tokens) - 1] for row, row_tokens in zip(rows, tokens, strict=True)],
                    device=device,
                )
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                logits = model(
                    input_ids=latest, attention_mask=mask, position_ids=positions, past_key_values=cache, **extra
                ).logits
                for row_tokens, token in zip(tokens, logits[:, -1, :].argmax(dim=-1).tolist(), strict=True):
                    row_tokens.append(token)
            keep = []
            for at, (row, row_tokens) in enumerate(zip(rows, tokens, strict=True)):
                text = tokenizer.decode(row_tokens, skip_special_tokens=True)
                if row_tokens[-1] in ends or len(row_tokens) >= max_new_tokens or any(stop in text for stop in stops):
                    answers[row] = cut_at_stops(text, stops)
                    answered()
                else:
                    keep.append(at)
            if len(keep) < len(rows):
                cache, mask = _kept_rows(cache, mask, keep)
                rows, tokens = [rows[at] for at in keep], [tokens[at] for at in keep]
    return answers


def _prefill(
    model: nn.Module, inner: nn.Module, prompts: list[list[int]], pad: int, extra: dict
) -> tuple[DynamicCache, torch.Tensor, list[int]]:
    """The prompts' cache and attention mask (padded on the left) and each one's first new token."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    width = max(len(ids) for ids in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    # generate()'s positions: counted along the mask, padding at 0
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = DynamicCache(config=inner.config)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, **extra).logits
    return cache, mask, logits[:, -1, :].argmax(dim=-1).tolist()


def _joined(
    cache: DynamicCache | None, mask: torch.Tensor, joining: DynamicCache, joining_mask: torch.Tensor
) -> tuple[DynamicCache, torch.Tensor]:
    """One cache and mask for the batch's rows then the joining rows, the narrower padded on the left."""
    import torch
    from torch.nn.functional import pad
    from transformers import DynamicCache

    if cache is None or not mask.shape[0]:
        return joining, joining_mask
    width = max(mask.shape[1], joining_mask.shape[1])

    def widened(tensor: torch.Tensor, columns_at: int) -> torch.Tensor:  # zeros on the left of dimension columns_at
        missing = width - tensor.shape[columns_at]
        return pad(tensor, (0, 0) * (tensor.dim() - 1 - columns_at) + (missing, 0)) if missing else tensor

    layers = [
        (
            torch.cat([widened(old.keys, 2), widened(new.keys, 2)]),
            torch.cat([widened(old.values, 2), widened(new.values, 2)]),
        )
        for old, new in zip(cache.layers, joining.layers, strict=True)
    ]
    return DynamicCache(layers), torch.cat([widened(mask, 1), widened(joining_mask, 1)])


def _kept_rows(cache: DynamicCache, mask: torch.Tensor, keep: list[int]) -> tuple[DynamicCache | None, torch.Tensor]:
    """The cache and mask of the rows in ``keep``, less the columns on the left that are padding in all."""
    import torch
    from transformers import DynamicCache

    if not keep:
        return None, mask[:0, :0]
    kept = torch.tensor(keep, device=mask.device)
    cache.batch_select_indices(kept)
    mask = mask[kept]
    start = int(mask.any(dim=0).long().argmax())  # the first column any kept row attends to
    if start == 0:
        return cache, mask
    # the row that needed them has left: attending to fewer padded columns saves time, not tokens
    trimmed = DynamicCache([(layer.keys[:, :, start:], layer.values[:, :, start:]) for layer in cache.layers])
    return trimmed, mask[:, start:]


def padded_batch_answers(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    stops: Sequence[str],
    answered: Callable[[], object] = lambda: None,
) -> list[str]:
    """Answers from ``model.generate`` over batches padded on the left, longest prompts first.

    Each row stops at EOS or its first stop string, but a batch runs until its last row does.
    """
    import torch

    from tunelab.data.collate import padding_id

    device = next(model.parameters()).device
    eos = stop_token_ids(tokenizer, model)
    pad_id = padding_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
    answers: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        width = max(len(prompts[index]) for index in chosen)
        ids = [[pad_id] * (width - len(prompts[index])) + prompts[index] for index in chosen]
        mask = [[0] * (width - len(prompts[index])) + [1] * len(prompts[index]) for index in chosen]
        with torch.no_grad():
            output = model.generate(
                input_ids=torch.tensor(ids, device=device),
                attention_mask=torch.tensor(mask, device=device),
                max_new_tokens=max_new_tokens,
                **GREEDY,
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
            answered()
    return answers
