"""Shared fixtures: an isolated cache per session, generated images, a hash of any tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """One cache per test session: the backbone is exported once, the user's cache is untouched."""
    path = tmp_path_factory.mktemp("edgemaker-cache")
    old = os.environ.get("EDGEMAKER_CACHE_DIR")
    os.environ["EDGEMAKER_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EDGEMAKER_CACHE_DIR", None)
    else:
        os.environ["EDGEMAKER_CACHE_DIR"] = old


# Issue 13: TFLite Micro must agree with LiteRT on >= 99% of test samples for EVERY int8 file the suite
# makes. Each in-process TFLM check (export/tflm.check, which pipeline runs on every full-int8 .tflite) is
# recorded here; the session fails at the end when one ran and agreed on less (pytest_sessionfinish),
# unless LiteRT's own reference kernels answer every differing sample as TFLM does (a near tie that the
# kernels' int8 rounding decides; the run's warning says so too): those are listed, not failed.
TFLM_CHECKS: list[tuple[str, object]] = []


@pytest.fixture(scope="session", autouse=True)
def _record_tflm_checks():
    from edgemaker.export import tflm

    real = tflm.check

    def recording(litert, paths, *args, **kwargs):
        result = real(litert, paths, *args, **kwargs)
        TFLM_CHECKS.append((str(litert.path), result))
        return result

    recording.__wrapped__ = real  # a test that plants a disagreement on purpose calls this one
    patch = pytest.MonkeyPatch()
    patch.setattr(tflm, "check", recording)
    yield
    patch.undo()


def _below_goal(explained: bool) -> list[str]:
    """Checks under the goal; `explained`: those whose every differing sample LiteRT's own reference
    kernels answer as TFLM does (a near tie that int8 kernel rounding decides, export/tflm.py), else the rest."""
    from edgemaker.export.tflm import AGREEMENT_GOAL

    return [f"{path}: {r.agreement_with_litert:.1%} of {r.samples} ({', '.join(r.disagreements)})"
            for path, r in TFLM_CHECKS if r.status == "ok" and r.agreement_with_litert is not None
            and r.agreement_with_litert < AGREEMENT_GOAL
            and (r.differing is not None and r.reference_kernels_side_with_tflm == r.differing) == explained]


def _tflm_below_goal() -> list[str]:
    return _below_goal(explained=False)


def pytest_terminal_summary(terminalreporter):
    if not TFLM_CHECKS:
        return
    ran = [r for _, r in TFLM_CHECKS if r.status == "ok"]
    other = [f"{r.status}: {r.message}" for _, r in TFLM_CHECKS if r.status != "ok"]
    terminalreporter.write_line(
        f"TFLite Micro: {len(ran)} int8 files run ({sum(r.samples for r in ran)} samples), lowest agreement with "
        f"LiteRT {min((r.agreement_with_litert for r in ran), default=1.0):.1%}; {len(other)} not run"
        + (f" ({'; '.join(sorted(set(other)))})" if other else ""))
    for line in _tflm_below_goal():
        terminalreporter.write_line(f"TFLite Micro BELOW the 99% goal: {line}")
    for line in _below_goal(explained=True):
        terminalreporter.write_line(f"TFLite Micro under the goal on near ties that LiteRT's reference kernels "
                                    f"decide as TFLM does (not a TFLM fault): {line}")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and _tflm_below_goal():
        session.exitstatus = 1


def pattern_image(kind: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Easy-to-separate classes: stripes, checks, blobs, with random colours and phase."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    freq = rng.uniform(0.15, 0.3)
    phase = rng.uniform(0, 6.28)
    if kind == "stripes":
        field = np.sin(xx * freq + phase)
    elif kind == "checks":
        field = np.sign(np.sin(xx * freq + phase) * np.sin(yy * freq + phase))
    else:  # blobs
        cx, cy = rng.uniform(size * 0.3, size * 0.7, 2)
        field = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < (size * rng.uniform(0.2, 0.35)) ** 2, 1.0, -1.0)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = (field[..., None] + 1) / 2
    arr = a * t + b * (1 - t) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_image_folder(root: Path, classes=("stripes", "checks", "blobs"), per_class: int = 10, seed: int = 0,
                      fmt: str = "png") -> Path:
    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pattern_image(label, rng).save(root / label / f"{label}_{i:02d}.{fmt}")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data")


def tree_digest(root: Path) -> str:
    """Names, sizes, contents and mtimes of everything under root: proves a folder was not written."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest.update(f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}|{st.st_mode}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data beside the checkout)")
    return path


def outlier_calibration_set(root: Path, n: int = 5) -> list[Path]:
    """`n` low-contrast images (pixels 100..150) and one that spans 0..255: calibrating on the
    extremes stretches the int8 input grid wider than averaging each image's range does."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n + 1):
        low, high = (0, 256) if i == n else (100, 151)
        pixels = rng.integers(low, high, (64, 64, 3), dtype=np.uint8)
        if i == n:
            pixels[0, 0], pixels[-1, -1] = 0, 255
        paths.append(root / f"calib_{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def make_tone_folder(root: Path, per_class: int = 8, seed: int = 0, loudness: tuple[float, float] | None = None) -> Path:
    """Three classes of noisy tones (220 / 880 / 3000 Hz), 1-2 s mono at 16 kHz: easy sounds, so a
    learner above chance (1/3) is learning. `loudness`: a range to draw each clip's amplitude from
    (default a fixed 0.3)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rate = 16000
    for label, freq in (("low", 220.0), ("mid", 880.0), ("high", 3000.0)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            t = np.arange(int(rate * rng.uniform(1.0, 2.0))) / rate
            amplitude = 0.3 if loudness is None else rng.uniform(*loudness)
            x = amplitude * np.sin(2 * np.pi * freq * rng.uniform(0.95, 1.05) * t) + rng.normal(0, 0.01, len(t))
            sf.write(root / label / f"{label}_{i}.wav", x.astype(np.float32), rate)
    return root


def make_tiny_digit_folder(root: Path, per_class: int = 60, seed: int = 0) -> Path:
    """8x8 grayscale digits (the size of old scanner digit sets): each drawn with Pillow's bitmap font
    at a random offset on a 16x16 canvas, shrunk to 8x8, with a little noise."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            canvas = Image.new("L", (16, 16), 0)
            ImageDraw.Draw(canvas).text((int(rng.integers(2, 7)), int(rng.integers(0, 4))), str(digit), fill=255,
                                        font=font)
            small = np.asarray(canvas.resize((8, 8), Image.BILINEAR), np.float32)
            small = np.clip(small * rng.uniform(0.7, 1.0) + rng.normal(0, 12, small.shape), 0, 255)
            Image.fromarray(small.astype(np.uint8), "L").save(folder / f"{digit}_{i:03d}.png")
    return root


# -- markers (registered in pyproject.toml): `make test-fast` runs what none of them marks --------------
# A test is marked by what it uses, read from its own source and its fixtures' (in its module or here),
# so a new test is marked without anyone remembering to.
BROWSER_MODULES = {"test_web_e2e", "test_web_runs_e2e"}
RAY_MODULES = {"test_ray_engine", "test_ray_job"}
# Calls that train, extract embeddings, export a model or start a process: seconds to minutes each.
HEAVY_CALLS = ("train_run(", ".create(", "wait_run(", "export_session(", "extract_embeddings(", "\"train\"",
               "search(", "fine_tune(", "distill(", "embed_run(", "subprocess.", "Popen(", "run_compare(", "run_curve(",
               "embed_samples(", "fit_head(", "train_backbone(", ".export(")


SOURCES: dict[object, str | None] = {}  # a fixture or helper's source, read once for all the tests that use it


def _source_of(fn) -> str | None:
    import inspect

    if fn not in SOURCES:
        try:
            SOURCES[fn] = inspect.getsource(fn)
        except (OSError, TypeError):
            SOURCES[fn] = None
    return SOURCES[fn]


def _sources(item, depth: int = 3) -> str:
    """The test's source, its fixtures' and (to `depth` calls) the module-level helpers they call."""
    import inspect
    import re

    fixtures = getattr(item, "_fixtureinfo", None)
    funcs = [getattr(item, "function", None)]
    for defs in (fixtures.name2fixturedefs.values() if fixtures else ()):
        funcs += [d.func for d in defs]
    seen, parts = set(), []
    for _ in range(depth):
        found = []
        for fn in funcs:
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            text = _source_of(fn)
            if text is None:
                continue
            parts.append(text)
            scope = getattr(fn, "__globals__", {})
            for name in set(re.findall(r"\b([A-Za-z_]\w*)\(", text)):
                helper = scope.get(name)
                if inspect.isfunction(helper) and getattr(helper, "__module__", "").split(".")[0] != "edgemaker":
                    found.append(helper)
        funcs = found
    return "\n".join(parts)


MEASURED_SLOW = {line.strip() for line in (Path(__file__).parent / "slow_tests.txt").read_text().splitlines()
                 if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__ if getattr(item, "module", None) else ""
        source = _sources(item)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        if module in RAY_MODULES:
            item.add_marker(pytest.mark.ray)
        if "shared_data(" in source:
            item.add_marker(pytest.mark.real_data)
        if any(call in source for call in HEAVY_CALLS) or item.nodeid.split("[")[0] in MEASURED_SLOW:
            item.add_marker(pytest.mark.slow)


def lite0_64_budget_search(root: Path, seed: int, epochs: int, max_flash: int, max_ram: int, patches: dict = (),
                           **search_kwargs):
    """One budget search on generated images with only EfficientNet-Lite0 cuts at 64 px (no small_cnn, no
    MobileNetV1): (classifier, record, splits, options, cache). `patches`: more module attributes set
    for the search only, {(module, name): value}."""
    from edgemaker.data.splits import SplitOptions, make_splits
    from edgemaker.data.validate import validate_folder
    from edgemaker.progress import SilentProgress
    from edgemaker.tasks import budget_search
    from edgemaker.tasks.classifier import ImageClassifier
    from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams

    folder = make_image_folder(root / "data", per_class=8, seed=seed)
    splits = make_splits(validate_folder(folder), SplitOptions(seed=0))
    options = ClassifierOptions(hparams=HParams(epochs=epochs), augmentation=AugmentationOptions(views=1),
                                cache_dir=root / "cache")
    mp = pytest.MonkeyPatch()
    mp.setattr(budget_search, "SIZES", (64,))
    mp.setattr(budget_search, "SMALL_CNN", ())
    mp.setattr(budget_search, "MOBILENET_V1_SIZES", ())
    for (module, name), value in dict(patches).items():
        mp.setattr(module, name, value)
    try:
        cache = ImageClassifier.open_cache(options)
        clf, record = budget_search.search(ImageClassifier, splits.train, splits.val, options, SilentProgress(), cache,
                                           max_flash, max_ram, **search_kwargs)
    finally:
        mp.undo()
    return clf, record, splits, options, cache
