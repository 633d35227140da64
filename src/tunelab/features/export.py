"""``tunelab embed``: embed every text of a data file with a frozen model and write the vectors.

Writes safetensors (``embeddings`` [n, width], with the model, pooling and layer in the metadata)
or Parquet (``text`` and ``embedding`` columns), chosen by the output's suffix, through
``tunelab.atomic.atomic_path`` (a temporary file and a rename). Uses the same embedding cache as
feature-based training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.atomic import atomic_path
from tunelab.errors import UserError
from tunelab.features.embedding import Pooling

OUTPUT_SUFFIXES = (".safetensors", ".parquet")


@dataclass
class EmbedResult:
    output: Path
    count: int
    width: int
    cached: bool


def embed_file(
    model: str,
    data: Path | str,
    output: Path | str,
    pooling: Pooling = "mean",
    layer: int = -1,
    column: str = "text",
    max_length: int = 512,
    use_cache: bool = True,
    progress: bool = True,
) -> EmbedResult:
    import torch

    from tunelab.data.loading import read_text_column
    from tunelab.features.cache import embeddings_for
    from tunelab.models.loading import load_backbone, load_tokenizer
    from tunelab.models.resolve import model_location

    output = Path(output)
    if output.suffix not in OUTPUT_SUFFIXES:
        raise UserError(f"--output {output}: give a .safetensors or .parquet file")
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name")
    texts = read_text_column(data, column)
    tokenizer = load_tokenizer(model)
    encoder = load_backbone(model, torch.float32)
    sequences = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    vectors, cached = embeddings_for(encoder, model_location(model), sequences, pooling, layer, use_cache, progress)
    with atomic_path(output) as temporary:
        if output.suffix == ".safetensors":
            from safetensors.torch import save_file

            metadata = {"model": model, "pooling": pooling, "layer": str(layer), "count": str(len(texts))}
            save_file({"embeddings": vectors.contiguous()}, temporary, metadata=metadata)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"text": texts, "embedding": vectors.tolist()})
            pq.write_table(table, temporary)
    return EmbedResult(output, len(texts), int(vectors.shape[1]), cached)
