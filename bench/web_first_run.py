"""A new user's first run in the web app, timed: `edgemaker serve` started -> project created ->
20 samples in each of 3 classes (two uploaded as folders of photos, one captured with the webcam's
hold-to-record) -> one click on Train with the default formats (ONNX and TFLite, fp32 and int8, C
array) -> model_int8.tflite downloaded. Cold: a fresh cache, so the backbone is exported too.

Driven by Playwright in Debian chromium with the fake webcam; the clicks are instant, so a person
adds their own reading and clicking time. Prints and writes bench-web.json.
Data: ../shared/data/caltech-dev10 (first 20 images of two classes) when present, else demo shapes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 20


def photos(tmp: Path) -> dict[str, list[Path]]:
    real = ROOT.parent / "shared" / "data" / "caltech-dev10"
    if real.is_dir():
        return {c: sorted((real / c).iterdir())[:PER_CLASS] for c in ("sunflower", "starfish")}
    from edgemaker.synthetic import make_dataset

    make_dataset(tmp / "shapes", per_class=PER_CLASS, seed=0)
    return {c: sorted((tmp / "shapes" / c).iterdir())[:PER_CLASS] for c in ("circle", "square")}


def main() -> None:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="edgemaker-web-bench-"))
    env = {**os.environ, "EDGEMAKER_CACHE_DIR": str(tmp / "cache")}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edgemaker", "serve", str(tmp / "projects"), "--no-browser",
                             "--port", "0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    url = None
    while url is None:
        match = re.search(r"open (http://\S+)", proc.stderr.readline())
        url = match.group(1) if match else None
    times["server_up_s"] = time.perf_counter() - t0
    sets = photos(tmp)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=[
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
                "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_context(accept_downloads=True).new_page()
            page.set_default_timeout(600_000)
            page.goto(url)
            page.get_by_label("Name").fill("first")
            page.get_by_role("button", name="Create project").click()
            for name in [*sets, "me"]:
                page.get_by_label("New class").fill(name)
                page.get_by_role("button", name="Add class").click()
                page.locator(f'section[data-class="{name}"]').wait_for()
            for name, files in sets.items():
                page.locator(f'section[data-class="{name}"] input[type=file]').first.set_input_files([str(f) for f in files])
                page.locator(f'section[data-class="{name}"] .count').filter(has_text=str(PER_CLASS)).wait_for()
            page.get_by_role("button", name="Start camera").click()
            page.get_by_label("Into class").select_option("me")
            page.get_by_role("button", name="Hold to record").hover()
            page.mouse.down()
            count = page.locator('section[data-class="me"] .count')
            while int(count.inner_text() or 0) < PER_CLASS:
                page.wait_for_timeout(100)
            page.mouse.up()
            page.get_by_role("button", name="Stop capture").click()
            times["data_ready_s"] = time.perf_counter() - t0
            page.get_by_role("tab", name="2 · Train").click()
            t_train = time.perf_counter()
            page.get_by_role("button", name="Train", exact=True).click()
            page.locator("#train-state").filter(has_text=re.compile("done|failed")).wait_for()
            state = page.locator("#train-state").inner_text()
            times["train_click_to_done_s"] = time.perf_counter() - t_train
            page.get_by_role("tab", name="5 · Export").click()
            with page.expect_download() as info:
                page.get_by_role("link", name="model_int8.tflite", exact=True).click()
            info.value.save_as(tmp / "model_int8.tflite")
            times["total_to_download_s"] = time.perf_counter() - t0
            browser.close()
        run = sorted((tmp / "projects" / "first" / "runs").iterdir())[-1]
        metrics = json.loads((run / "metrics.json").read_text())
        result = {"state": state, "samples": {k: PER_CLASS for k in [*sets, "me"]},
                  **{k: round(v, 1) for k, v in times.items()},
                  "pipeline_timings_s": metrics["timings"],
                  "exports": {e["format"]: {"test_accuracy": e["test_accuracy"], "size_bytes": e["size_bytes"]}
                              for e in metrics["exports"]},
                  "downloaded_bytes": (tmp / "model_int8.tflite").stat().st_size}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    (ROOT / "bench-web.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
