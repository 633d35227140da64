"""tunelab.retrieval.documents: folders and JSONL load as documents; chunks are word windows worked out by hand."""

from __future__ import annotations

import json

import pytest

from tunelab.errors import UserError
from tunelab.retrieval.documents import Document, chunk_documents, load_documents


def words(count: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def write_lines(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- chunking -------------------------------------------------------------------------------------


def test_ten_words_in_windows_of_four_sharing_two():
    document = Document(id="doc", text=words(10), source="doc")

    chunks = chunk_documents([document], chunk_size=4, overlap=2)

    assert [chunk.text for chunk in chunks] == ["w0 w1 w2 w3", "w2 w3 w4 w5", "w4 w5 w6 w7", "w6 w7 w8 w9"]
    assert [chunk.start_word for chunk in chunks] == [0, 2, 4, 6]
    assert [chunk.id for chunk in chunks] == ["doc#0", "doc#1", "doc#2", "doc#3"]
    assert {chunk.doc_id for chunk in chunks} == {"doc"}


def test_last_window_is_shorter_and_none_is_contained_in_its_neighbour():
    document = Document(id="doc", text=words(7), source="doc")

    chunks = chunk_documents([document], chunk_size=3, overlap=1)

    # step 2: windows start at words 0, 2, 4 and 6; the last one holds the single remaining word
    assert [chunk.text for chunk in chunks] == ["w0 w1 w2", "w2 w3 w4", "w4 w5 w6"]


def test_no_overlap_cuts_disjoint_windows():
    document = Document(id="doc", text=words(5), source="doc")

    chunks = chunk_documents([document], chunk_size=2, overlap=0)

    assert [chunk.text for chunk in chunks] == ["w0 w1", "w2 w3", "w4"]


def test_short_document_is_one_chunk():
    chunks = chunk_documents([Document(id="a", text="just three words", source="a")], chunk_size=50, overlap=10)

    assert [(chunk.id, chunk.text) for chunk in chunks] == [("a#0", "just three words")]


def test_chunks_never_cross_documents():
    documents = [Document(id="a", text=words(3, "a"), source="a"), Document(id="b", text=words(3, "b"), source="b")]

    chunks = chunk_documents(documents, chunk_size=2, overlap=1)

    assert [(chunk.id, chunk.text) for chunk in chunks] == [
        ("a#0", "a0 a1"),
        ("a#1", "a1 a2"),
        ("b#0", "b0 b1"),
        ("b#1", "b1 b2"),
    ]


def test_chunk_keeps_the_original_whitespace_between_its_words():
    document = Document(id="doc", text="  First line.\n\nSecond\tline here.  ", source="doc")

    chunks = chunk_documents([document], chunk_size=3, overlap=0)

    assert [chunk.text for chunk in chunks] == ["First line.\n\nSecond", "line here."]


@pytest.mark.parametrize(("chunk_size", "overlap"), [(0, 0), (4, 4), (4, 5), (4, -1)])
def test_bad_chunking_is_a_user_error(chunk_size, overlap):
    with pytest.raises(UserError, match="chunk_size|overlap"):
        chunk_documents([Document(id="a", text="a b c", source="a")], chunk_size, overlap)


# --- loading a folder -----------------------------------------------------------------------------


def test_folder_of_txt_and_md_files_loads_recursively_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("Bees make honey.", encoding="utf-8")
    (tmp_path / "a.md").write_text("# Ants\nAnts carry leaves.", encoding="utf-8")
    (tmp_path / "sub" / "c.TXT").write_text("Cats sleep.", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("not,a,document", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.txt").write_text("skipped", encoding="utf-8")

    documents = load_documents(tmp_path)

    assert [document.id for document in documents] == ["a.md", "b.txt", "sub/c.TXT"]
    assert documents[0].text == "# Ants\nAnts carry leaves."
    assert documents[2].source == str(tmp_path / "sub" / "c.TXT")


def test_non_utf8_file_is_named(tmp_path):
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("line one\ncaf\xe9\n".encode("latin-1"))

    with pytest.raises(UserError) as caught:
        load_documents(tmp_path)

    assert str(caught.value) == f"{tmp_path / 'bad.txt'} line 2: not UTF-8 text (save the file as UTF-8)"


def test_folder_without_text_files_is_an_error(tmp_path):
    (tmp_path / "data.csv").write_text("a,b", encoding="utf-8")

    with pytest.raises(UserError, match="no .txt or .md file"):
        load_documents(tmp_path)


def test_folder_of_blank_files_is_an_empty_collection(tmp_path):
    (tmp_path / "a.txt").write_text("  \n", encoding="utf-8")

    with pytest.raises(UserError, match="no document with any text"):
        load_documents(tmp_path)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        load_documents(tmp_path / "absent")


# --- loading JSONL --------------------------------------------------------------------------------


def test_jsonl_ids_titles_and_content_field(tmp_path):
    path = write_lines(
        tmp_path / "docs.jsonl",
        [
            json.dumps({"id": "paris", "title": "France", "text": "Paris is the capital."}),
            "",
            json.dumps({"content": "Leaves turn light into sugar."}),
            json.dumps({"id": 7, "text": "Seven."}),
        ],
    )

    documents = load_documents(path)

    assert [(document.id, document.text) for document in documents] == [
        ("paris", "France\nParis is the capital."),
        ("line 3", "Leaves turn light into sugar."),
        ("7", "Seven."),
    ]
    assert documents[1].source == f"{path} line 3"


def test_missing_text_field_names_file_line_and_fields(tmp_path):
    rows = [{"text": "one"}, {"text": "two"}, {"text": "three"}, {"title": "T", "body": "four"}]
    path = write_lines(tmp_path / "docs.jsonl", [json.dumps(row) for row in rows])

    with pytest.raises(UserError) as caught:
        load_documents(path)

    assert str(caught.value) == f"{path} line 4: no 'text' field (found: body, title)"


def test_invalid_json_line_is_named(tmp_path):
    path = write_lines(tmp_path / "docs.jsonl", [json.dumps({"text": "fine"}), '{"text": "broken'])

    with pytest.raises(UserError) as caught:
        load_documents(path)

    message = str(caught.value)
    assert message.startswith(f"{path} line 2: invalid JSON (")
    assert "\n" not in message


def test_non_object_line_is_named(tmp_path):
    path = write_lines(tmp_path / "docs.jsonl", ['["a", "list"]'])

    with pytest.raises(UserError, match=r"docs.jsonl line 1: expected a JSON object, got list"):
        load_documents(path)


def test_text_that_is_not_a_string_is_named(tmp_path):
    path = write_lines(tmp_path / "docs.jsonl", [json.dumps({"text": ["a", "b"]})])

    with pytest.raises(UserError, match=r"docs.jsonl line 1: 'text' must be a string, got list"):
        load_documents(path)


def test_duplicate_ids_are_named(tmp_path):
    path = write_lines(
        tmp_path / "docs.jsonl", [json.dumps({"id": "x", "text": "a"}), json.dumps({"id": "x", "text": "b"})]
    )

    with pytest.raises(UserError, match=r"docs.jsonl line 2: duplicate id 'x' \(first on line 1\)"):
        load_documents(path)


def test_empty_jsonl_is_an_error(tmp_path):
    path = write_lines(tmp_path / "docs.jsonl", ["", "  "])

    with pytest.raises(UserError, match="no documents"):
        load_documents(path)


def test_unsupported_file_type_is_an_error(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("text\nhello\n", encoding="utf-8")

    with pytest.raises(UserError, match="unsupported document collection '.csv'"):
        load_documents(path)
