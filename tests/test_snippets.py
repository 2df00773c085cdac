"""The code users copy (web app's Export page, the docs pages) is generated from the model file's metadata;
each Python snippet, run as written in a folder holding only the model file and an input, gives the
same top-1 and probabilities (within 1e-4) as `edgemaker predict`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA, make_image_folder, make_tone_folder, pattern_image
from PIL import Image

from edgemaker.export import snippets as sn
from edgemaker.export.runtime import load_exported
from edgemaker.pipeline import train_run
from edgemaker.tasks.options import AugmentationOptions, ClassifierOptions, HParams, ModelOptions

DOCS = Path(__file__).resolve().parents[1] / "docs"
SNIPPET_PAGES = {"python-onnxruntime": DOCS / "images.md", "http-api": DOCS / "web.md"}  # where each is shown
FAST = dict(hparams=HParams(epochs=15), augmentation=AugmentationOptions(enabled=False))


def run_snippet(code: str, folder: Path, model: Path, sample: Path, name: str) -> dict[str, float]:
    """Run `code` as written, in a fresh folder holding only the model file and the input."""
    folder.mkdir()
    shutil.copy(model, folder / model.name)
    shutil.copy(sample, folder / name)
    (folder / "snippet.py").write_text(code)
    done = subprocess.run([sys.executable, "snippet.py"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("\t") for line in done.stdout.splitlines() if "\t" in line]
    return {label: float(p) for label, p in rows}


def assert_same_as_predict(model: Path, sample: Path, printed: dict[str, float]) -> None:
    exported = load_exported(model)
    expected = exported.predict_files([sample])[0]
    assert list(printed) and list(printed)[0] == exported.labels[int(expected.argmax())]  # same top-1
    assert sorted(printed) == sorted(exported.labels)
    got = np.array([printed[label] for label in exported.labels])
    assert np.abs(got - expected).max() <= 1e-4, (got, expected)


# -- images ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("snippets-images")
    data = make_image_folder(root / "data", per_class=8)
    out = root / "run"
    train_run(data, out, ClassifierOptions(model=ModelOptions(input_size=96), **FAST),
              formats=("onnx-fp32", "onnx-int8", "tflite-int8", "c-array"))
    return out


def photos(folder: Path) -> list[Path]:
    """A real photo when ../shared/data is present, and generated ones that take the other paths of
    the decoder: a large non-square JPEG with an EXIF rotation (decoded in JPEG draft mode), a
    transparent PNG (composited on white)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    caltech = SHARED_DATA / "caltech-dev10"
    if caltech.is_dir():
        out.append(sorted(caltech.glob("*/*.jpg"))[0])
    rng = np.random.default_rng(3)
    big = pattern_image("blobs", rng, size=200).resize((900, 600), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees when shown
    big.save(folder / "rotated.jpg", quality=90, exif=exif.tobytes())
    out.append(folder / "rotated.jpg")
    rgba = pattern_image("stripes", rng, size=120).resize((160, 110)).convert("RGBA")
    alpha = np.full((110, 160), 255, np.uint8)
    alpha[:, :40] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(folder / "transparent.png")
    out.append(folder / "transparent.png")
    return out


@pytest.mark.parametrize("model_name", ["model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"])
def test_python_snippets_on_photos_match_edgemaker_predict(image_run, tmp_path, model_name):
    model = image_run / model_name
    meta = sn.read_model_metadata(model)
    key = "python-litert" if model.suffix == ".tflite" else "python-onnxruntime"
    assert key in {s.key for s in sn.snippets_for(meta, model.name)}  # the one the web app shows
    generate = sn.python_litert if model.suffix == ".tflite" else sn.python_onnxruntime
    for i, photo in enumerate(photos(tmp_path / "photos")):
        sample = "photo" + photo.suffix
        code = generate(meta, model.name, sample)
        assert "import edgemaker" not in code and "from edgemaker" not in code
        printed = run_snippet(code, tmp_path / f"run{i}", model, photo, sample)
        assert_same_as_predict(model, photo, printed)


def test_a_plain_resize_would_not_match(image_run, tmp_path):
    """The check has teeth: the old snippet (resize without the centre crop) gives other numbers."""
    model = image_run / "model_fp32.onnx"
    photo = photos(tmp_path / "photos")[-2]  # the 3:2 JPEG: cropping matters
    meta = sn.read_model_metadata(model)
    code = sn.python_onnxruntime(meta, model.name, "photo.jpg").replace(", box=box)", ")")
    printed = run_snippet(code, tmp_path / "run", model, photo, "photo.jpg")
    with pytest.raises(AssertionError):
        assert_same_as_predict(model, photo, printed)


# Real TFLite Micro resolver methods (tensorflow/lite/micro/micro_mutable_op_resolver.h).
TFLM_ADD = """Abs Add AddN ArgMax ArgMin AveragePool2D BatchMatMul BatchToSpaceNd Cast Ceil Concatenation Conv2D Cos
DepthToSpace DepthwiseConv2D Dequantize Div Elu Equal Exp ExpandDims Fill Floor FloorDiv FloorMod FullyConnected
Gather GatherNd Greater GreaterEqual HardSwish L2Normalization L2Pool2D LeakyRelu Less LessEqual Log LogSoftmax
LogicalAnd LogicalNot LogicalOr Logistic MaxPool2D Maximum Mean Minimum Mirrorpad Mul Neg NotEqual Pack Pad PadV2
Prelu Quantize ReduceMax Relu Relu6 Reshape ResizeBilinear ResizeNearestNeighbor Round Rsqrt Select SelectV2 Shape
Sin Slice Softmax SpaceToBatchNd SpaceToDepth Split SplitV Sqrt Square SquaredDifference Squeeze StridedSlice Sub
Sum Svdf Tanh Transpose TransposeConv Unpack""".split()

TFLM_STUB = """#pragma once
#include <cstddef>
#include <cstdint>
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef struct { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef union { int8_t* int8; uint8_t* uint8; float* f; } TfLitePtrUnion;
typedef struct { TfLitePtrUnion data; TfLiteQuantizationParams params; size_t bytes; } TfLiteTensor;
namespace tflite {
struct Model {};
const Model* GetModel(const void* buf);
class MicroOpResolver {};
template <unsigned int N> class MicroMutableOpResolver : public MicroOpResolver {
 public:
%s
};
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& resolver, uint8_t* arena, size_t arena_size);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
};
}  // namespace tflite
""" % "\n".join(f"  TfLiteStatus Add{name}();" for name in TFLM_ADD)


def compile_tflm(code: str, header: Path, folder: Path) -> None:
    """g++ -fsyntax-only with a run's real model_data.h; TFLite Micro's headers are not installed
    here, so its API is declared by a stub holding the real resolver method names."""
    if not shutil.which("g++"):
        pytest.skip("g++ is not installed")
    for name in ("micro_interpreter.h", "micro_mutable_op_resolver.h"):
        path = folder / "tensorflow/lite/micro" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TFLM_STUB)
    (folder / "tensorflow/lite/schema").mkdir(parents=True, exist_ok=True)
    (folder / "tensorflow/lite/schema/schema_generated.h").write_text("#pragma once\n")
    shutil.copy(header, folder / "model_data.h")
    (folder / "classify.cc").write_text(code)
    done = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-I.", "classify.cc"],
                          cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_tflite_micro_snippet_compiles_against_the_run_header(image_run, tmp_path):
    model = image_run / "model_int8.tflite"
    meta = sn.read_model_metadata(model)
    ops = sn.tflite_ops(model)
    shown = {s.key: s.code for s in sn.snippets_for(meta, model.name, ops=ops, arena_bytes=300_000)}
    code = shown["tflite-micro"]
    assert "AddConv2D" in code and "AddDepthwiseConv2D" in code and "kArenaSize = 365536" in code
    assert "const uint8_t* pixels" in code and "96 * 96 * 3" in code
    compile_tflm(code, image_run / "model_data.h", tmp_path)


def test_every_generated_snippet_is_valid_code_for_each_kind_of_file(image_run):
    for name in ("model_fp32.onnx", "model_int8.onnx", "model_int8.tflite"):
        meta = sn.read_model_metadata(image_run / name)
        for s in sn.snippets_for(meta, name, project="my pets"):
            if s.language == "python":
                compile(s.code, s.key, "exec")
            assert name in s.code
    http = sn.http_api(meta, "model_int8.tflite", project="my pets")
    assert "project_name=my%20pets" in http and "curl -F file=@photo.jpg" in http
    with pytest.raises(ValueError, match="onnx and .tflite"):
        sn.snippets_for(meta, "model_data.h")


def test_command_line_prints_the_snippets_of_a_file(image_run, tmp_path, capsys):
    assert sn.main([str(image_run / "model_int8.tflite")]) == 0
    out = capsys.readouterr().out
    assert "## Python, LiteRT (TFLite)" in out and "resolver.AddConv2D();" in out
    assert sn.main([str(tmp_path / "missing.onnx")]) == 2
    assert "file not found" in capsys.readouterr().err
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert sn.main([str(tmp_path / "bad.onnx")]) == 2
    assert "not an edgemaker model" in capsys.readouterr().err


# -- sounds ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("snippets-audio")
    out = root / "run"
    train_run(make_tone_folder(root / "data", per_class=6, seed=1), out,
              ClassifierOptions(model=ModelOptions(backbone="efficientnet_lite0_mel"), **FAST),
              formats=("onnx-int8", "onnx-fp32-nofrontend", "tflite-int8"))
    return out


def clips(folder: Path) -> list[Path]:
    """A real clip when ../shared/data is present, and a generated stereo 22.05 kHz clip with
    silent gaps (downmix, resampling and silence removal all matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    esc = SHARED_DATA / "esc10-dev9"
    if esc.is_dir():
        out.append(sorted(esc.glob("test/*/*.wav"))[0])
    rate = 22050
    t = np.arange(int(rate * 2.3)) / rate
    left = 0.4 * np.sin(2 * np.pi * 880 * t)
    right = 0.2 * np.sin(2 * np.pi * 3000 * t)
    gap = np.zeros(int(rate * 0.4))
    stereo = np.stack([np.concatenate([gap, left, gap]), np.concatenate([gap, right, gap])], axis=1)
    sf.write(folder / "stereo.wav", stereo.astype(np.float32), rate, subtype="PCM_16")
    out.append(folder / "stereo.wav")
    return out


@pytest.mark.parametrize("model_name", ["model_int8.onnx", "model_fp32_nofrontend.onnx"])
def test_python_snippet_on_clips_matches_edgemaker_predict(audio_run, tmp_path, model_name):
    model = audio_run / model_name
    if not model.is_file():
        pytest.fail(f"{model_name} missing: {sorted(p.name for p in audio_run.iterdir())}")
    meta = sn.read_model_metadata(model)
    assert meta["input"]["kind"] == ("waveform" if "nofrontend" not in model_name else "logmel")
    for i, clip in enumerate(clips(tmp_path / "clips")):
        code = sn.python_onnxruntime(meta, model.name, "clip.wav")
        assert "import edgemaker" not in code
        printed = run_snippet(code, tmp_path / f"run{i}", model, clip, "clip.wav")
        assert_same_as_predict(model, clip, printed)


def test_litert_snippet_on_clips_matches_edgemaker_predict(audio_run, tmp_path):
    """Full-int8 TFLite sound models take the log-mel patch: the LiteRT snippet computes it, quantizes
    it with the file's own scale and zero point, and must print what `edgemaker predict` says."""
    model = audio_run / "model_int8_nofrontend.tflite"
    meta = sn.read_model_metadata(model)
    assert meta["input"]["kind"] == "logmel"
    for i, clip in enumerate(clips(tmp_path / "clips")):
        code = sn.python_litert(meta, model.name, "clip.wav")
        assert "def logmel(" in code and "import edgemaker" not in code
        printed = run_snippet(code, tmp_path / f"run{i}", model, clip, "clip.wav")
        assert_same_as_predict(model, clip, printed)


def test_a_silent_patch_runs_through_the_full_int8_sound_model(audio_run):
    """Digital silence makes a constant log-mel patch; its per-patch std must not quantize to zero
    (the int8 DIV kernel aborts on a zero divisor): the file answers with finite probabilities."""
    from edgemaker.export.runtime import load_exported

    model = load_exported(audio_run / "model_int8_nofrontend.tflite")
    patch = np.full((1, *model._shape[1:]), np.log(0.001), np.float32)  # log(0 + offset) everywhere
    proba = model.predict_proba(patch)
    assert proba.shape == (1, len(model.labels)) and np.isfinite(proba).all()
    assert abs(float(proba.sum()) - 1) < 0.05


def test_the_full_int8_sound_model_runs_in_tflite_micro(audio_run):
    """efficientnet_lite0_mel's patch standardisation is part of its front end (no int8 SQRT or
    data-dependent DIV left in the file): it runs in TFLite Micro, agrees with LiteRT on the test
    clips, and answers a silent window (a constant patch) with finite probabilities."""
    import json

    from edgemaker.export import tflm
    from edgemaker.export.runtime import load_exported

    metrics = json.loads((audio_run / "metrics.json").read_text())
    check = next(e for e in metrics["exports"] if e["format"] == "tflite-int8")["tflm"]
    assert check["status"] == "ok", check
    assert check["agreement_with_litert"] >= 0.99 and check["samples"] >= 1 and check["arena_bytes"] > 0
    path = audio_run / "model_int8_nofrontend.tflite"
    model = tflm.TFLMModel(load_exported(path))
    from edgemaker.backbones.audio_backbones import FRONTENDS

    silent = FRONTENDS["efficientnet_lite0_mel"].compute(np.zeros((1, 15_600), np.float32))  # digital silence
    assert silent.shape[1:] == model._shape[1:] and not silent.any()  # the front end's standardised patch: zeros
    proba = model.predict_proba(silent)
    assert proba.shape == (1, len(model.labels)) and np.isfinite(proba).all()


def test_tflite_micro_sound_snippet_compiles(audio_run, image_run, tmp_path):
    meta = sn.read_model_metadata(audio_run / "model_int8_nofrontend.tflite")
    code = sn.tflite_micro(meta, "model_int8.tflite", ["CONV_2D", "FULLY_CONNECTED", "SOFTMAX"])
    assert "const float* logmel" in code and "MicroMutableOpResolver<3>" in code
    compile_tflm(code, image_run / "model_data.h", tmp_path)


# -- the documentation ------------------------------------------------------------------------------

def docs_examples() -> dict[str, str]:
    """The snippets the docs pages show, generated for a representative model (Lite0, 224 px, int8)."""
    from edgemaker.backbones import get_spec
    from edgemaker.export.metadata import model_metadata

    meta = model_metadata(get_spec("efficientnet_lite0"), ["cat", "dog"], "int8")
    got = {s.key: s.code for s in sn.snippets_for(meta, "model_int8.onnx", project="pets")}
    return {"python-onnxruntime": got["python-onnxruntime"], "http-api": got["http-api"]}


def test_docs_show_the_generated_snippets():
    for key, code in docs_examples().items():
        page = SNIPPET_PAGES[key]
        block = re.search(rf"<!-- snippet:{key} -->\n```\w*\n(.*?)```\n", page.read_text("utf-8"), re.S)
        assert block, f"{page.name} has no <!-- snippet:{key} --> block"
        assert block.group(1) == code, f"{page.name}'s {key} snippet is stale: regenerate it (see the test)"


# -- the web app's route --------------------------------------------------------------------------

def test_web_route_serves_the_snippets_of_a_run_file(image_run, tmp_path):
    pytest.importorskip("fastapi")
    from web_helpers import Api, assert_error

    from edgemaker.web.app import WebConfig, create_app

    api = Api(create_app(WebConfig(home=tmp_path / "projects")))
    assert api.post("/api/v1/projects", json={"name": "my pets", "task": "image"}).status_code == 201
    run = tmp_path / "projects" / "my pets" / "runs" / "20260101-120000-abcd"
    shutil.copytree(image_run, run)
    (run / "request.json").write_text("{}")
    (run / "status.json").write_text('{"state": "done"}')
    url = "/api/v1/projects/my%20pets/runs/20260101-120000-abcd/snippets"

    onnx = api.get(f"{url}/model_int8.onnx").json()
    meta = sn.read_model_metadata(run / "model_int8.onnx")
    assert [s["key"] for s in onnx["snippets"]] == ["edgemaker-cli", "python-onnxruntime", "http-api"]
    assert onnx["snippets"][1]["code"] == sn.python_onnxruntime(meta, "model_int8.onnx")  # what the test ran
    assert "project_name=my%20pets" in onnx["snippets"][2]["code"]
    tfl = {s["key"]: s["code"] for s in api.get(f"{url}/model_int8.tflite").json()["snippets"]}
    assert set(tfl) == {"edgemaker-cli", "python-litert", "tflite-micro", "http-api"}
    assert "resolver.AddConv2D();" in tfl["tflite-micro"] and "kArenaSize = " in tfl["tflite-micro"]
    assert_error(api.get(f"{url}/model_data.h"), 404, "not_found")
    assert_error(api.get(f"{url}/missing.onnx"), 404, "not_found")
    assert_error(api.get(f"{url}/..%2Fmodel_int8.onnx"), 404)


def update_docs() -> None:
    """Rewrite the docs pages' snippet blocks from the generator: `python tests/test_snippets.py`."""
    for key, code in docs_examples().items():
        page = SNIPPET_PAGES[key]
        text, n = re.subn(rf"(<!-- snippet:{key} -->\n```\w*\n)(.*?)(```\n)", lambda m: m.group(1) + code + m.group(3),
                          page.read_text("utf-8"), flags=re.S)
        assert n == 1, f"{page.name} needs one <!-- snippet:{key} --> block"
        page.write_text(text, "utf-8")


if __name__ == "__main__":
    update_docs()
