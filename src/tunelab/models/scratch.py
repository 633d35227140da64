"""A new, randomly initialised causal LM built from ``model: {init: scratch, ...}`` and a tokenizer.

transformers builds the architecture; this module only turns our few size keys into its config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.config.schema import ScratchModelConfig

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedTokenizerBase


def scratch_model_config(spec: ScratchModelConfig, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    from transformers import GPT2Config, LlamaConfig

    special = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    intermediate = spec.intermediate_size or 4 * spec.hidden_size
    if spec.architecture == "gpt2":
        return GPT2Config(
            n_embd=spec.hidden_size,
            n_layer=spec.layers,
            n_head=spec.heads,
            n_inner=intermediate,
            n_positions=spec.max_position,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **special,
        )
    return LlamaConfig(
        hidden_size=spec.hidden_size,
        intermediate_size=intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_position,
        tie_word_embeddings=True,
        **special,
    )


def build_scratch_model(spec: ScratchModelConfig, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """The randomly initialised model (seed it first: ``accelerate.utils.set_seed``)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(scratch_model_config(spec, tokenizer), dtype=torch.float32)
