"""``tunelab embed`` / ``embed_file``: every text of a data file -> one vector, as safetensors or Parquet."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from conftest import make_labelled_records, write_jsonl
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.features.export import embed_file

TEXT_COUNT = 10
WIDTH = 64  # the tiny models' hidden size


@pytest.fixture()
def texts_file(tmp_path):
    return write_jsonl(tmp_path / "texts.jsonl", make_labelled_records(TEXT_COUNT, seed=7))


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    """An empty embedding cache for this test alone: other tests may have embedded the same texts."""
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))


def test_embed_writes_safetensors_with_one_row_per_text(tiny_bert, texts_file, tmp_path, own_cache, capsys):
    output = tmp_path / "out" / "vectors.safetensors"

    assert main(["embed", "--model", str(tiny_bert), "--data", str(texts_file), "--output", str(output)]) == 0

    assert f"{TEXT_COUNT} embeddings of width {WIDTH} (computed) -> {output}" in capsys.readouterr().out
    with safe_open(output, "pt") as handle:
        vectors = handle.get_tensor("embeddings")
        metadata = handle.metadata()
    assert vectors.shape == (TEXT_COUNT, WIDTH) and vectors.dtype == torch.float32
    assert torch.isfinite(vectors).all()
    assert len({tuple(row.tolist()) for row in vectors}) == TEXT_COUNT  # a vector per text, not one repeated
    assert metadata["model"] == str(tiny_bert) and metadata["pooling"] == "mean" and metadata["layer"] == "-1"
    assert sorted(path.name for path in output.parent.iterdir()) == ["vectors.safetensors"]  # no temporary left


def test_embed_writes_parquet_with_each_text_beside_its_vector(tiny_llama, texts_file, tmp_path, own_cache):
    import pyarrow.parquet as pq

    output = tmp_path / "vectors.parquet"
    command = ["embed", "--model", str(tiny_llama), "--data", str(texts_file), "--output", str(output)]

    assert main([*command, "--pooling", "last_token", "--layer", "1"]) == 0

    table = pq.read_table(output).to_pydict()
    assert table["text"] == [row["text"] for row in make_labelled_records(TEXT_COUNT, seed=7)]
    assert len(table["embedding"]) == TEXT_COUNT
    assert {len(vector) for vector in table["embedding"]} == {WIDTH}


def test_the_second_call_uses_the_cache_and_gives_the_same_vectors(
    tiny_bert, texts_file, tmp_path, own_cache, capsys, monkeypatch
):
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    command = ["embed", "--model", str(tiny_bert), "--data", str(texts_file), "--output"]
    assert main([*command, str(first)]) == 0
    assert "(computed)" in capsys.readouterr().out

    from tunelab.features import embedding

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although the embeddings were cached")

    with monkeypatch.context() as patch:
        patch.setattr(embedding, "embed_token_ids", no_encoder)
        assert main([*command, str(second)]) == 0
    assert f"{TEXT_COUNT} embeddings of width {WIDTH} (from the cache)" in capsys.readouterr().out

    assert main([*command, str(tmp_path / "third.safetensors"), "--no-cache"]) == 0
    assert "(computed)" in capsys.readouterr().out
    with safe_open(first, "pt") as one, safe_open(second, "pt") as two:
        torch.testing.assert_close(one.get_tensor("embeddings"), two.get_tensor("embeddings"), atol=0, rtol=0)


def test_another_pooling_is_computed_not_taken_from_the_cache(tiny_bert, texts_file, tmp_path, own_cache):
    mean = embed_file(str(tiny_bert), texts_file, tmp_path / "mean.safetensors", progress=False)
    cls = embed_file(str(tiny_bert), texts_file, tmp_path / "cls.safetensors", pooling="cls", progress=False)

    assert not mean.cached and not cls.cached
    assert (mean.count, mean.width) == (cls.count, cls.width) == (TEXT_COUNT, WIDTH)


@pytest.mark.parametrize("name", ["vectors.npy", "vectors.jsonl", "vectors"])
def test_a_wrong_output_suffix_is_a_usage_error(tiny_bert, texts_file, tmp_path, capsys, name):
    output = tmp_path / name

    assert main(["embed", "--model", str(tiny_bert), "--data", str(texts_file), "--output", str(output)]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert ".safetensors or .parquet" in err[0]
    assert not output.exists()


def test_a_missing_text_column_is_a_usage_error(tiny_bert, tmp_path):
    data = write_jsonl(tmp_path / "texts.jsonl", [{"review": "great"}])
    with pytest.raises(UserError, match="no 'text' column"):
        embed_file(str(tiny_bert), data, tmp_path / "out.parquet", progress=False)
    assert not (tmp_path / "out.parquet").exists()
