"""GGUF files as ordinary Hugging Face model folders: converted once, cached by the file's hash.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=...)``, with the ``gguf``
package) and dequantizes it into a plain trainable model, but that takes 15 to 25 seconds on every
load, and the result has no folder: PEFT's ``base_model_name_or_path``, a run folder's base, a
merge and a reload all need one. So we convert once into ``<cache>/gguf/<sha256 prefix>/``
(safetensors, config, tokenizer with its chat template) and hand that folder to everything else;
the folder's ``gguf_source.json`` says which file it came from. No library keeps such a cache.

Only the conversion imports transformers; finding and hashing a file is plain Python, so configs
naming a GGUF file are checked before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunelab.cache_dirs import cache_dir
from tunelab.errors import UserError, first_line

GGUF_SUFFIX = ".gguf"
SOURCE_FILE = "gguf_source.json"  # written last: a folder without it is an unfinished conversion
_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file and the Hugging Face folder it was converted into."""

    file: Path
    sha256: str
    folder: Path

    def record(self) -> dict[str, str]:
        return {"gguf_file": str(self.file), "sha256": self.sha256, "converted_folder": str(self.folder)}


def gguf_file_in(reference: str | Path) -> Path | None:
    """The GGUF file a reference names: the file itself, or the one ``.gguf`` in a folder that has
    no ``config.json``. None when the reference is not GGUF at all."""
    path = Path(reference).expanduser()
    if path.suffix.lower() == GGUF_SUFFIX:
        if not path.is_file():
            raise UserError(f"model: GGUF file not found: {reference}")
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    candidates = sorted(path.glob(f"*{GGUF_SUFFIX}"))
    if len(candidates) > 1:
        names = ", ".join(candidate.name for candidate in candidates)
        raise UserError(f"model: {reference} holds several GGUF files ({names}); name one of them")
    return candidates[0] if candidates else None


_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The file's SHA-256, remembered per (path, size, mtime) so a process hashes each file once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def converted_folder(gguf_file: Path, cache: Path | None = None) -> GgufSource:
    """The cached Hugging Face folder of ``gguf_file``, converting it first where none is cached."""
    gguf_file = gguf_file.expanduser().resolve()
    sha256 = file_sha256(gguf_file)
    folder = (cache or cache_dir("gguf")) / sha256[:16]
    source = GgufSource(gguf_file, sha256, folder)
    if not (folder / SOURCE_FILE).is_file():
        _convert(source)
    else:
        from tunelab.models.portable import make_portable

        make_portable(folder)  # a conversion cached by an earlier tunelab: a no-op once portable
    return source


def _convert(source: GgufSource) -> None:
    """Dequantize into a temporary folder beside the cache entry, then rename it into place, so an
    interrupted conversion never looks finished and two concurrent ones cannot mix files (a whole
    folder, hence staged here rather than through ``tunelab.atomic``'s file writers)."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file; say so up front)
    except ImportError:
        needs = "needs the gguf package: pip install 'tunelab[gguf]'"
        raise UserError(f"model: reading {source.file.name} {needs}") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from tunelab.models.portable import make_portable

    transformers_logging.disable_progress_bar()
    source.folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=source.folder.parent, prefix=f".{source.folder.name}.", suffix=".tmp"))
    try:
        where, name = str(source.file.parent), source.file.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, **_dequantize_option())
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise UserError(f"model: cannot read the GGUF file {source.file}: {first_line(error)}") from None
        model.config.name_or_path = str(source.folder)
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        make_portable(staging)  # transformers 4 reads the converted model too
        (staging / SOURCE_FILE).write_text(json.dumps(source.record(), indent=2) + "\n", encoding="utf-8")
        if source.folder.is_dir() and not (source.folder / SOURCE_FILE).is_file():
            shutil.rmtree(source.folder)  # a folder left without its mark by hand: not ours to trust
        try:
            staging.rename(source.folder)
        except OSError:
            if not (source.folder / SOURCE_FILE).is_file():  # not another process's finished conversion
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _dequantize_option() -> dict[str, object]:
    """transformers 5.23 keeps GGUF weights packed (not trainable, not saveable) unless asked to
    dequantize; earlier releases always dequantized and have no ``GgufConfig``."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}
