"""report.html in a real browser (headless Chromium): the table has one row per entry and every
image loads, from the file alone.

A copy of the page gets a small script that, on window load, writes these facts into the DOM;
``--dump-dom`` prints the DOM after the page settles and the test reads them back.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_runs import failed_record, finished_record

from tunelab.compare.report import PLOT_FILES, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = "--window-size=1400,1000"  # a laptop screen: the page must fit it
PROBE = """<script>
window.addEventListener("load", () => {
  const rows = Array.from(document.querySelectorAll("#results tbody tr"));
  const images = Array.from(document.images);
  const facts = {
    entries: rows.map((row) => row.dataset.entry),
    images: images.length,
    loaded: images.filter((image) => image.complete && image.naturalWidth > 0).length,
    pageWidth: document.documentElement.scrollWidth,
    viewWidth: document.documentElement.clientWidth,
  };
  const out = document.createElement("pre");
  out.id = "probe-facts";
  out.textContent = JSON.stringify(facts);
  document.body.appendChild(out);
});
</script>"""


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def install_chromium() -> str:
    """Debian's chromium via apt-get where we may install packages; else the reason we cannot."""
    if shutil.which("apt-get") is None:
        return "no chromium, chromium-browser or google-chrome on PATH, and no apt-get to install one"
    if os.geteuid() != 0:
        return "no chromium on PATH, and installing one with apt-get needs root"
    command = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
    return "" if done.returncode == 0 else f"`apt-get install chromium` failed: {last[0]}"


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        reason = install_chromium()
        found = find_browser()
        if found is None:
            pytest.skip(reason or "chromium installed but not found on PATH")
    return found


def dom_facts(browser: str, page: Path) -> dict:
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", WINDOW]
    done = subprocess.run(
        [*command, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    found = re.search(r'<pre id="probe-facts">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no facts in the dumped DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_the_report_renders_one_row_per_entry_and_every_image(browser, tmp_path):
    records = [
        failed_record(tmp_path / "runs", "broken", "<b>not bold</b>"),
        finished_record(tmp_path / "runs", "lora", losses=(3.0, 2.0)),
        finished_record(tmp_path / "runs", "ia3", trainable=5, losses=(3.0, 2.5)),
    ]
    page = write_report(records, {"python": "3.11"}, tmp_path / "report")
    (tmp_path / "runs").rename(tmp_path / "moved")  # the page needs nothing but itself

    facts = dom_facts(browser, page)
    assert facts["entries"] == ["lora", "ia3", "broken"]
    assert facts["images"] == len(PLOT_FILES) and facts["loaded"] == facts["images"]


def test_a_wide_comparison_fits_a_1400_pixel_window(browser, tmp_path):
    """Many metrics, a tuned entry and long names: the page itself never scrolls sideways."""
    metrics = {f"metric_{index}_with_a_long_name": 0.5 for index in range(12)}
    records = [
        finished_record(tmp_path / "runs", f"entry-with-a-rather-long-name-{index}", extra_summary=metrics)
        for index in range(4)
    ]
    page = write_report(records, {"python": "3.11"}, tmp_path / "report")
    facts = dom_facts(browser, page)
    assert facts["pageWidth"] <= facts["viewWidth"] <= 1400, facts
    shot = tmp_path / "report.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", WINDOW, f"--screenshot={shot}"]
    subprocess.run([*command, page.as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(shot.read_bytes()[16:20], "big")  # the PNG header's width
    assert width == 1400
