"""Small randomly initialised models and a tokenizer trained on the spot, for examples and tests.

Nothing here is a pretrained model: it lets the quick example and the test suite run offline
with real transformers classes (Llama, GPT-2, BERT) at a size that trains in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tunelab.tokenization.training import SPECIAL_TOKENS, build_bpe_tokenizer

__all__ = ["SPECIAL_TOKENS", "build_tiny_causal_lm", "save_tiny_model", "train_bpe_tokenizer"]


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer (``PreTrainedTokenizerFast``) that adds BOS like Llama's."""
    return build_bpe_tokenizer(texts, vocab_size)


def build_tiny_causal_lm(
    architecture: str,
    tokenizer,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_position: int = 512,
    seed: int = 0,
):
    """A random ``llama`` or ``gpt2`` causal LM sized for ``tokenizer`` (``bert``: a masked-LM encoder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, BertConfig, GPT2Config, LlamaConfig

    common = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if architecture == "llama":
        config = LlamaConfig(
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=max_position,
            tie_word_embeddings=False,
            **common,
        )
    elif architecture == "gpt2":
        config = GPT2Config(n_embd=hidden_size, n_layer=layers, n_head=heads, n_positions=max_position, **common)
    elif architecture == "bert":
        config = BertConfig(
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=max_position,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            # BERT's 0.02 init leaves a tiny random encoder's [CLS] almost the same for every input
            initializer_range=0.2,
        )
        torch.manual_seed(seed)
        return AutoModelForMaskedLM.from_config(config)
    else:
        raise ValueError(f"unknown architecture {architecture}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def save_tiny_model(folder: Path, architecture: str, texts: Iterable[str], vocab_size: int = 512, **sizes) -> Path:
    """Train a tokenizer on ``texts``, build a matching random model, save both in ``folder``."""
    tokenizer = train_bpe_tokenizer(texts, vocab_size)
    model = build_tiny_causal_lm(architecture, tokenizer, **sizes)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
