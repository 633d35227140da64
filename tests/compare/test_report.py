"""The page: one row per entry, ranked, failed ones last with their error, user text escaped, plots
embedded (and beside it as PNGs), nothing fetched from elsewhere; the terminal table."""

from __future__ import annotations

import re

import pytest
from fake_runs import failed_record, finished_record

from tunelab.compare.report import PLOT_FILES, format_table, write_report

EVIL_ERROR = "<script>alert('x')</script> & more"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    records = [
        failed_record(folder / "runs", "broken", EVIL_ERROR),
        finished_record(
            folder / "runs",
            "lora",
            losses=(3.0, 2.0),
            extra_summary={"accuracy": 0.6, "pad_token_id": 0, "method_prep_time_s": 0.5},  # run facts, not metrics
        ),
        finished_record(folder / "runs", "full", trainable=10_000, losses=(3.0, 1.5), extra_summary={"accuracy": 0.9}),
        finished_record(folder / "runs", "zeroshot", trainable=0, losses=(4.0,), extra_summary={"accuracy": 0.3}),
    ]
    page = write_report(records, {"python": "3.11", "gpu": None, "cpu": "<cpu>"}, folder)
    return folder, page.read_text(encoding="utf-8"), records


def table_rows(page: str) -> list[str]:
    body = re.search(r'<table id="results">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return re.findall(r'<tr class="[^"]*" data-entry="([^"]*)"', body)


def test_one_row_per_entry_ranked_by_the_metric_with_failed_entries_last(report):
    _, page, _ = report
    assert table_rows(page) == ["full", "lora", "zeroshot", "broken"]
    assert "ranked by accuracy (higher is better)" in page


def test_user_text_is_escaped(report):
    _, page, _ = report
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "cpu &lt;cpu&gt;" in page


def test_the_page_is_self_contained_with_png_copies_beside_it(report):
    folder, page, records = report
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == len(PLOT_FILES) and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page
    for name in PLOT_FILES:
        assert (folder / name).read_bytes().startswith(b"\x89PNG")
    # each entry's resolved config, and the note on where an entry that trains nothing is drawn
    assert page.count("<details>") == len(records)
    assert "method:\n  name: lora" in page
    assert "entries that train nothing (x) are drawn at 1e-03" in page


def test_the_terminal_table_is_aligned_and_ranked(report):
    _, _, records = report
    lines = format_table(records).splitlines()
    header = ["name", "method", "accuracy", "trainable", "trainable", "%", "tokens", "peak", "MiB", "time", "s"]
    header += ["status"]
    assert lines[0].split() == header
    assert [line.split()[0] for line in lines[1:]] == ["full", "lora", "zeroshot", "broken"]
    assert len({line.index("finished") for line in lines[1:4]}) == 1  # one column for every row
    assert lines[1].split()[2] == "0.9000" and lines[1].split()[4] == "100" and lines[3].split()[4] == "0"
    assert EVIL_ERROR in lines[4]


def test_the_page_opens_with_the_recommendation(report):
    _, page, _ = report
    section = re.search(r'<section id="recommendation">(.*?)</section>', page, re.S).group(1)
    assert "<li>best: full (accuracy 0.9000)</li>" in section
    assert page.index('id="recommendation"') < page.index('<table id="results">')
    assert "pad_token_id" not in page and "method_prep_time_s" not in page
