"""The real page in headless Debian Chromium, driven by Playwright, against `edgemaker serve` on a
real socket, with Chromium's fake webcam and microphone. Screenshots land in build/screenshots/."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from conftest import pattern_image  # noqa: E402
from web_helpers import wav_bytes  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox", "--disable-gpu",
         "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--autoplay-policy=no-user-gesture-required"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian chromium is not installed (make test installs it: apt-get install chromium)")


@pytest.fixture
def server(tmp_path):
    """`edgemaker serve` as a user starts it; yields the printed URL."""
    home = tmp_path / "projects"
    proc = subprocess.Popen([sys.executable, "-m", "edgemaker", "serve", str(home), "--no-browser", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = None
    deadline = time.time() + 60
    while time.time() < deadline and url is None:
        line = proc.stderr.readline()
        match = re.search(r"open (http://\S+)", line)
        if match:
            url = match.group(1)
    assert url, "serve did not print its URL"
    yield url, home
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def page():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        context.grant_permissions(["camera", "microphone"])
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def create_project(page, url: str, name: str, kind: str, classes: list[str]) -> None:
    page.goto(url)
    page.get_by_label("Name").fill(name)
    page.get_by_label(kind).check()
    page.get_by_role("button", name="Create project").click()
    page.get_by_role("tab", name="1 · Data").wait_for()
    for label in classes:
        add_class(page, label)


def add_class(page, name: str) -> None:
    page.get_by_label("New class").fill(name)
    page.get_by_role("button", name="Add class").click()
    page.locator(f'section[data-class="{name}"]').wait_for()


def count(page, name: str) -> int:
    return int(page.locator(f'section[data-class="{name}"] .count').inner_text())


def wait_count(page, name: str, at_least: int, timeout: float = 30) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = count(page, name)
        if n >= at_least:
            return n
        page.wait_for_timeout(200)
    raise AssertionError(f"class {name} has {count(page, name)} samples, wanted {at_least}")


def train_onnx_only(page, backbone: str | None = None) -> None:
    page.get_by_role("tab", name="2 · Train").click()
    page.locator("#advanced summary").click()
    if backbone:
        page.get_by_label("Backbone").select_option(backbone)
    for fmt in ("tflite-fp32", "tflite-int8", "c-array"):  # the browser test checks the page, not the converters
        page.locator(f'#formats input[value="{fmt}"]').uncheck()
    page.get_by_role("button", name="Train", exact=True).click()
    page.locator("#train-state").filter(has_text=re.compile("done|failed|cancelled")).wait_for(timeout=480_000)
    assert page.locator("#train-state").inner_text() == "done", page.locator("#train-state").inner_text()


def bars(page) -> dict[str, float]:
    """One consistent snapshot (the bars are re-rendered on every prediction)."""
    return page.evaluate("""Object.fromEntries([...document.querySelectorAll('#bars [role=meter]')]
        .map((m) => [m.getAttribute('aria-label'), Number(m.getAttribute('aria-valuenow'))]))""")


def watch_bars(page, classes: list[str], timeout: float = 60) -> list[dict[str, float]]:
    """Probability snapshots until two differ (the bars move) or time runs out."""
    page.locator("#bars [role=meter]").first.wait_for(timeout=timeout * 1000)
    seen = [bars(page)]
    deadline = time.time() + timeout
    while time.time() < deadline and len({tuple(sorted(s.items())) for s in seen}) < 2:
        page.wait_for_timeout(300)
        seen.append(bars(page))
    assert sorted(seen[0]) == sorted(classes)
    return seen


def download_int8(page, tmp_path: Path, classes: list[str]) -> None:
    from edgemaker.export.runtime import load_exported

    page.get_by_role("tab", name="5 · Export").click()
    with page.expect_download() as info:
        page.get_by_role("link", name="model_int8.onnx", exact=True).click()
    target = tmp_path / "downloaded_int8.onnx"
    info.value.save_as(target)
    model = load_exported(target)
    assert model.labels == sorted(classes) and model.metadata["quantization"] == "int8"


def train_results_live_preview(page, kind: str, classes: list[str], live: str, backbone: str | None = None) -> None:
    """Train, check the Results page, then watch the preview's bars move with the live device."""
    train_onnx_only(page, backbone)
    shot(page, f"{kind}-2-train")
    page.get_by_role("tab", name="3 · Results").click()
    page.get_by_text("test accuracy (float)").wait_for()
    assert page.get_by_role("table", name="Confusion matrix").is_visible()
    shot(page, f"{kind}-3-results")

    page.get_by_role("tab", name="4 · Preview").click()
    page.get_by_role("button", name=live).click()
    seen = watch_bars(page, classes)
    shot(page, f"{kind}-4-preview")
    assert len({tuple(sorted(s.items())) for s in seen}) >= 2, f"the probability bars should move ({live})"
    for snapshot in seen:
        assert abs(sum(snapshot.values()) - 1) < 0.02
    page.get_by_role("button", name="Stop preview").click()


@pytest.mark.slow
def test_image_project_in_the_browser(server, page, tmp_path):
    url, home = server
    create_project(page, url, "shapes", "Images", ["left", "right", "patterns"])

    page.get_by_role("button", name="Start camera").click()
    page.locator("#capture-video").wait_for()
    page.get_by_label("Into class").select_option("left")
    for _ in range(4):
        page.get_by_role("button", name="Take photo").click()
        page.wait_for_timeout(150)
    wait_count(page, "left", 4)
    page.get_by_label("Into class").select_option("right")
    burst = page.get_by_role("button", name="Hold to record")
    burst.hover()
    page.mouse.down()
    page.wait_for_timeout(1500)
    page.mouse.up()
    right = wait_count(page, "right", 3)
    assert right >= 3, "holding the burst button takes several photos"

    rng = np.random.default_rng(0)
    files = []
    for i in range(6):
        path = tmp_path / f"pattern_{i}.png"
        pattern_image(["stripes", "checks"][i % 2], rng).save(path)
        files.append(str(path))
    page.locator('section[data-class="patterns"] input[type=file]').first.set_input_files(files)
    wait_count(page, "patterns", 6)
    assert len(list((home / "shapes" / "data" / "left").glob("capture-*.jpg"))) == 4  # the CLI's layout
    page.locator('section[data-class="left"] img').first.wait_for()
    shot(page, "image-1-data")

    train_results_live_preview(page, "image", ["left", "right", "patterns"], "Live camera")

    page.locator("#preview-file").set_input_files(files[0])
    page.locator("#preview-note").filter(has_text="pattern_0.png:").wait_for()
    assert page.locator("#bars .bar.top span").first.inner_text() == "patterns"
    download_int8(page, tmp_path, ["left", "right", "patterns"])
    shot(page, "image-5-export")


@pytest.mark.slow
def test_audio_project_in_the_browser(server, page, tmp_path):
    url, home = server
    create_project(page, url, "sounds", "Sounds", ["beep", "beep-long", "hum"])
    page.get_by_role("button", name="Start microphone").click()
    page.get_by_label("Clip length").select_option("1")
    for label, n in (("beep", 4), ("beep-long", 4)):
        page.get_by_label("Into class").select_option(label)
        if label == "beep-long":
            page.get_by_label("Clip length").select_option("2")
        for _ in range(n):
            page.get_by_role("button", name="Record clip").click()
            page.wait_for_function("!document.querySelector('#record').disabled")
        wait_count(page, label, n)
    levels = []
    for _ in range(20):  # the fake microphone beeps briefly twice a second: the meter must show it
        levels.append(page.evaluate("document.querySelector('#level').value"))
        page.wait_for_timeout(100)
    assert max(levels) > 0.01, levels
    clips = []
    for i in range(5):
        path = tmp_path / f"hum_{i}.wav"
        path.write_bytes(wav_bytes(110 + 7 * i, seconds=1.5, rate=22050, seed=i))
        clips.append(str(path))
    page.locator('section[data-class="hum"] input[type=file]').first.set_input_files(clips)
    wait_count(page, "hum", 5)
    recorded = sorted((home / "sounds" / "data" / "beep").glob("rec-*.wav"))
    assert len(recorded) == 4
    import soundfile as sf

    info = sf.info(str(recorded[0]))
    assert abs(info.duration - 1.0) < 0.05 and info.channels == 1
    page.locator('section[data-class="beep"] canvas').first.wait_for()
    shot(page, "audio-1-data")

    train_results_live_preview(page, "audio", ["beep", "beep-long", "hum"], "Live microphone", backbone="aisfx")
    download_int8(page, tmp_path, ["beep", "beep-long", "hum"])
    shot(page, "audio-5-export")
