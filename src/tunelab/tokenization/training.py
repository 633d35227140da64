"""Train a tokenizer on text files and save it as a folder ``AutoTokenizer.from_pretrained`` loads.

Two kinds:

- ``bpe``: byte-level BPE (GPT-2's pre-tokenizer and decoder, every byte in the initial alphabet),
  so any UTF-8 text encodes without ``<unk>`` and decodes back exactly. BOS is added like Llama's.
- ``char``: one token per distinct character of the data, nanoGPT's ``shakespeare_char`` style
  (the vocabulary is the sorted set of characters). A character the data never had becomes
  ``<unk>``. No BOS by default: a character model is trained on one contiguous stream, as in
  nanoGPT, where a BOS per document would only add tokens that carry nothing.

Both have the special tokens ``<pad>`` (id 0), ``<s>``, ``</s>``, ``<unk>``, set as the wrapper's
pad/bos/eos/unk. ``tokenizers`` does the training and the encoding; our code only reads the data,
wires the pipeline and writes the folder atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunelab.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
# Vocabulary order: <pad> is id 0, as in most tokenizers that have one.
SPECIAL_TOKEN_ORDER = ("pad_token", "bos_token", "eos_token", "unk_token")
BYTE_ALPHABET_SIZE = 256
DEFAULT_BPE_VOCAB_SIZE = 8000

TokenizerKind = Literal["bpe", "char"]
TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "char")

PLAIN_TEXT_SUFFIXES = (".txt", ".md")
# Fields that hold text in the data formats tunelab reads (see tunelab.data.formats).
TEXT_FIELDS = ("text", "prompt", "completion", "system", "instruction", "input", "output")
CHAT_FIELD = "messages"


@dataclass(frozen=True)
class TrainedTokenizer:
    """What ``train_tokenizer`` wrote: the folder, the kind, the vocabulary size (special tokens
    included) and how much text it learned from."""

    output: Path
    kind: str
    vocab_size: int
    texts: int
    characters: int


def _special_tokens_in_order() -> list[str]:
    return [SPECIAL_TOKENS[name] for name in SPECIAL_TOKEN_ORDER]


def _bos_processor(backend) -> Any:
    from tokenizers import processors

    bos = SPECIAL_TOKENS["bos_token"]
    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
    )


def _wrap(backend) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    # clean_up_tokenization_spaces would delete the space in "a ." on decode; round trips must be exact.
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)


def check_vocab_size(kind: str, vocab_size: int | None) -> None:
    """Refuse a vocabulary size the kind cannot honour, before any data is read."""
    if kind not in TOKENIZER_KINDS:
        raise UserError(f"unknown tokenizer type '{kind}' (use {' or '.join(TOKENIZER_KINDS)})")
    if kind == "char":
        if vocab_size is not None:
            raise UserError(
                "a vocabulary size does not apply to a char tokenizer: its vocabulary is the data's characters"
            )
        return
    minimum = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
    if vocab_size is not None and vocab_size < minimum:
        raise UserError(
            f"vocabulary size {vocab_size} is too small for a byte-level BPE tokenizer: it needs at least "
            f"{minimum} ({BYTE_ALPHABET_SIZE} bytes + {len(SPECIAL_TOKENS)} special tokens)"
        )


def build_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_BPE_VOCAB_SIZE, add_bos: bool = True
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` with at most ``vocab_size`` tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_vocab_size("bpe", vocab_size)
    backend = Tokenizer(models.BPE())
    # add_prefix_space=False: a leading space would be invented on encode and kept on decode.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_special_tokens_in_order(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    if add_bos:
        backend.post_processor = _bos_processor(backend)
    return _wrap(backend)


def build_char_tokenizer(texts: Iterable[str], add_bos: bool = False) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: the special tokens, then the sorted distinct characters of ``texts``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    characters: set[str] = set()
    for text in texts:
        characters.update(text)
    tokens = _special_tokens_in_order() + sorted(characters)
    backend = Tokenizer(
        models.WordLevel({token: index for index, token in enumerate(tokens)}, SPECIAL_TOKENS["unk_token"])
    )
    # Every code point is its own piece, spaces and newlines included; no normalizer, so nothing is
    # stripped or merged. Fuse joins the pieces back with nothing between them (WordLevel alone
    # would decode with a space between tokens).
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    if add_bos:
        backend.post_processor = _bos_processor(backend)
    return _wrap(backend)


def _read_plain_text(path: Path) -> str:
    from tunelab.data.loading import check_utf8

    check_utf8(path)
    # newline="": keep "\r\n" as it is; a char tokenizer must see the file's own characters.
    with path.open(encoding="utf-8", newline="") as handle:
        text = handle.read()
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def _field_texts(row: dict[str, Any], columns: list[str]) -> Iterable[str]:
    for name in columns:
        value = row[name]
        if name == CHAT_FIELD:
            for message in value or []:
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, str) and content:
                    yield content
        elif value is not None and not isinstance(value, (list, dict)):
            text = str(value)  # CSV columns of digits arrive as numbers
            if text:
                yield text


def _read_structured(path: Path) -> list[str]:
    from tunelab.data.loading import load_rows

    dataset = load_rows(path)
    columns = [name for name in (*TEXT_FIELDS, CHAT_FIELD) if name in dataset.column_names]
    if not columns:
        raise UserError(
            f"{path}: no text field in columns {sorted(dataset.column_names)}; expected text, "
            "prompt/completion, instruction/input/output or messages"
        )
    # Each field is its own text: joining them would invent characters (a separator) the data lacks.
    texts = [text for row in dataset for text in _field_texts(row, columns)]
    if not any(text.strip() for text in texts):
        raise UserError(f"{path}: no text to train on in fields {columns}")
    return texts


def read_training_texts(files: Iterable[Path | str]) -> list[str]:
    """The texts of ``files``: a .txt/.md file whole (newlines kept), one text per text field of
    every row of a .jsonl/.json/.csv/.parquet file."""
    from tunelab.data.loading import LOADERS

    paths = [Path(file) for file in files]
    if not paths:
        raise UserError("no data files given")
    texts: list[str] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: file not found")
        if not path.is_file():
            raise UserError(f"{path}: not a file")
        suffix = path.suffix.lower()
        if suffix in PLAIN_TEXT_SUFFIXES:
            texts.append(_read_plain_text(path))
        elif suffix in LOADERS:
            texts.extend(_read_structured(path))
        else:
            raise UserError(
                f"{path}: unsupported file type '{suffix}' (use .txt, .md, .jsonl, .json, .csv or .parquet)"
            )
    return texts


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UserError(f"{output}: folder is not empty (choose another output or overwrite it)")


def _publish(staging: Path, output: Path, overwrite: bool) -> None:
    """Move the finished ``staging`` folder to ``output`` with renames, so ``output`` is never half written
    (a whole folder, hence staged here rather than through ``tunelab.atomic``'s file writers)."""
    _check_output(output, overwrite)  # again: something may have appeared while we trained
    if not output.exists():
        os.rename(staging, output)
        return
    if not any(output.iterdir()):
        os.replace(staging, output)  # POSIX rename replaces an empty folder
        return
    retired = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
    os.replace(output, retired)
    os.rename(staging, output)
    shutil.rmtree(retired, ignore_errors=True)


def train_tokenizer(
    files: Iterable[Path | str],
    output: Path | str,
    kind: TokenizerKind = "bpe",
    vocab_size: int | None = None,
    overwrite: bool = False,
    add_bos: bool | None = None,
) -> TrainedTokenizer:
    """Train a ``kind`` tokenizer on ``files`` and save it in ``output`` (``save_pretrained`` layout).

    ``vocab_size``: bpe only, an upper bound (default 8000, at least 260: 256 bytes plus the special
    tokens); a small corpus can stop short of it. A char tokenizer's size is set by the data; giving
    one is an error. ``add_bos`` (default: bpe yes, char no) prepends ``<s>`` when encoding.
    ``output`` must be absent or empty unless ``overwrite``; it is written in a temporary folder
    beside it and renamed into place.
    """
    output = Path(output)
    check_vocab_size(kind, vocab_size)
    _check_output(output, overwrite)
    texts = read_training_texts(files)
    if kind == "bpe":
        tokenizer = build_bpe_tokenizer(
            texts, vocab_size or DEFAULT_BPE_VOCAB_SIZE, add_bos=True if add_bos is None else add_bos
        )
    else:
        tokenizer = build_char_tokenizer(texts, add_bos=bool(add_bos))
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        tokenizer.save_pretrained(staging)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual folder permissions
        _publish(staging, output, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainedTokenizer(
        output=output.resolve(),
        kind=kind,
        vocab_size=len(tokenizer),
        texts=len(texts),
        characters=sum(len(text) for text in texts),
    )


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
