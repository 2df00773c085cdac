"""The Runs tab in headless Debian Chromium against `edgemaker serve`: a project with two real
finished runs (different backbone, augmentation and epochs) is listed side by side, and the
comparison shows what differs with B - A; an `edgemaker compare` result folder opens from the page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from test_web_e2e import CHROMIUM, SHOTS, page, shot  # noqa: E402, F401 - `page` is the browser fixture
from web_runs_helpers import shared_two_runs  # noqa: E402

pytestmark = pytest.mark.skipif(not CHROMIUM or not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason="Debian chromium is not installed (make test installs it: apt-get install chromium)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home, a, b = shared_two_runs(tmp_path_factory)
    folder = home / "shapes" / "experiments" / "backbones"  # what `edgemaker compare --out` leaves there
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps({"kind": "compare", "created": "2026-01-01T00:00:00+00:00"}))
    (folder / "index.html").write_text("<!doctype html><title>compare</title><h1>Backbone comparison</h1>"
                                       "<img alt=plot src='plot.svg'>")
    (folder / "plot.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg' width='40' height='20'>"
                                     "<rect width='40' height='20' fill='#36c'/></svg>")
    proc = subprocess.Popen([sys.executable, "-m", "edgemaker", "serve", str(home), "--no-browser", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = None
    deadline = time.time() + 60
    while time.time() < deadline and url is None:
        match = re.search(r"open (http://\S+)", proc.stderr.readline())
        url = match.group(1) if match else None
    assert url, "serve did not print its URL"
    yield url, a, b
    proc.terminate()
    proc.wait(10)


def _row(table, key: str) -> list[str]:
    return [c.inner_text().strip() for c in table.locator(f'tr[data-key="{key}"] td').all()]


def test_runs_page_lists_two_runs_and_compares_them(served, page):  # noqa: F811 - the imported fixture
    url, a, b = served
    page.goto(url)
    page.get_by_role("button", name=re.compile("^shapes")).click()
    page.get_by_role("tab", name="Runs").click()

    runs = page.get_by_role("table", name="Runs side by side")
    runs.wait_for()
    assert runs.locator("th[data-run]").evaluate_all("cells => cells.map(c => c.dataset.run)") == [b, a]
    assert _row(runs, "backbone") == ["small_cnn", "efficientnet_lite0"]
    assert "differs" in runs.locator('tr[data-key="backbone"]').get_attribute("class")
    assert "differs" not in (runs.locator('tr[data-key="batch_size"]').get_attribute("class") or "")
    assert all(v.endswith("%") for v in _row(runs, "test_accuracy"))
    assert all(v.endswith(("MB", "KB")) for v in _row(runs, "size:onnx-int8"))
    assert all(v.endswith(" s") for v in _row(runs, "time:total_s"))

    assert page.get_by_label("Run A").input_value() == a and page.get_by_label("Run B").input_value() == b
    page.get_by_role("button", name="Compare").click()
    table = page.get_by_role("table", name="Comparison")
    table.wait_for()
    summary = page.locator("#compare-summary").inner_text()
    assert re.search(r"\d+ settings and \d+ results differ", summary), summary
    assert _row(table, "backbone") == ["efficientnet_lite0", "small_cnn", "changed"]
    assert _row(table, "augmentation") == ["off", "on", "changed"]
    assert _row(table, "epochs") == ["30", "20", "−10"]
    size = _row(table, "size:onnx-int8")
    assert size[2].startswith("−") and "(×0.0" in size[2], size  # small_cnn's int8 file is a few % of Lite0's
    assert table.locator('tr[data-key="size:onnx-int8"] td.better').inner_text().strip() == size[1]
    assert table.locator('tr[data-key="batch_size"]').count() == 0  # only what differs
    shot(page, "runs-1-compare")

    page.get_by_label("only what differs").uncheck()
    page.locator('#comparison tr[data-key="batch_size"]').wait_for()
    assert _row(table, "batch_size") == ["32", "32", ""]

    with page.context.expect_page() as opened:
        page.get_by_role("link", name="backbones").click()
    result = opened.value
    result.wait_for_load_state()
    assert result.locator("h1").inner_text() == "Backbone comparison"
    assert result.evaluate("document.querySelector('img').naturalWidth") == 40  # its plot loads from its folder
    assert SHOTS.is_dir()
