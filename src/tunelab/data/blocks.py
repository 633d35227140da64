"""Language-model pretraining data: all text joined and cut into equal blocks, no padding.

Documents follow each other with EOS between them, and a block may span two documents (as in
GPT-2 and nanoGPT pretraining); the last partial block is dropped. The first token of a block has
no target, as for every example (it has no predecessor in the block).
"""

from __future__ import annotations

from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample


def cut_into_blocks(documents: list[TokenizedExample], block_length: int) -> list[TokenizedExample]:
    stream = [token for document in documents for token in document.input_ids]
    blocks = []
    for start in range(0, len(stream) - block_length + 1, block_length):
        ids = stream[start : start + block_length]
        blocks.append(TokenizedExample(ids, [IGNORE_INDEX, *ids[1:]]))
    return blocks
