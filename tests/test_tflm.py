"""TensorFlow Lite Micro: the int8 file runs in TFLM and agrees with LiteRT, the arena TFLM needs is
measured (and used by budgets), an unsupported operator is named in one line, a missing package is a
skip; the Arduino library holds the exact bytes and the model's own input quantization, and its C++
compiles against stub TFLM headers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_image_folder

from edgemaker import (
    AugmentationOptions,
    ClassifierOptions,
    ImageClassifier,
    ModelOptions,
    Quantization,
    load_image_folder,
)
from edgemaker.cli import cli
from edgemaker.export import tflm
from edgemaker.export.arduino import library_name, write_library
from edgemaker.export.device import budget, check_budget
from edgemaker.export.runtime import load_exported
from edgemaker.export.snippets import tflite_ops
from edgemaker.export.tflite import read_metadata

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")
needs_tflm = pytest.mark.skipif(not tflm.available(), reason="tflite-micro is not installed")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 96-px full-int8 .tflite of generated images (TFLM runs it in ~0.1 s per image)."""
    root = make_image_folder(tmp_path_factory.mktemp("d") / "data", per_class=8)
    splits = load_image_folder(root)
    clf = ImageClassifier.create(splits.train, splits.val, ClassifierOptions(
        model=ModelOptions(input_size=96), augmentation=AugmentationOptions(enabled=False)))
    path = clf.export(tmp_path_factory.mktemp("tflm"), Quantization.for_int8([s.path for s in splits.train]),
                      runtime="tflite")
    return splits, path


@needs_tflm
def test_tflm_agrees_with_litert_and_measures_the_arena(small):
    splits, path = small
    paths = [s.path for s in splits.train + splits.val + splits.test]
    result = tflm.check(load_exported(path), paths, max_samples=12)
    assert result.status == "ok", result.message
    assert result.samples == 12 and result.of == len(paths)
    assert result.agreement_with_litert >= 0.99, result
    assert result.max_abs_diff < 0.05 and result.ms_per_inference > 0
    # TFLM plans the activations as the liveness estimate does, and adds its persistent data.
    assert result.arena_planned_bytes + result.arena_persistent_bytes == result.arena_bytes
    assert abs(result.arena_planned_bytes - budget(path, measure=False).peak_ram_bytes) <= 0.05 * result.arena_planned_bytes
    # The measured arena is the smallest TFLM allocates in: 16 bytes less (its alignment) does not.
    data = path.read_bytes()
    assert tflm._new(data, result.arena_bytes, "m") is not None
    assert tflm._new(data, result.arena_bytes - 16, "m") is None
    b = budget(path)
    assert b.arena_bytes == result.arena_bytes and b.ram_bytes == b.arena_bytes
    assert b.to_dict()["ram_source"] == "measured by TFLite Micro"
    msg = check_budget(path.name, b, None, b.arena_bytes - 1)
    assert msg and "measured by TFLite Micro" in msg
    assert check_budget(path.name, b, None, b.arena_bytes) is None


@needs_tflm
def test_a_disagreement_is_checked_against_litert_reference_kernels(small, monkeypatch):
    """Where TFLM and LiteRT differ, LiteRT's reference kernels (TFLM's arithmetic) say whether the
    file's int8 rounding decides those samples (they answer as TFLM) or TFLM does something else
    (planted here: TFLM's answers rolled by one class, which no kernel reproduces)."""
    splits, path = small
    real = tflm.TFLMModel.predict_proba
    monkeypatch.setattr(tflm.TFLMModel, "predict_proba", lambda self, batch: np.roll(real(self, batch), 1, axis=1))
    check = getattr(tflm.check, "__wrapped__", tflm.check)  # not counted by the suite's agreement goal
    result = check(load_exported(path), [s.path for s in splits.test], max_samples=4)
    assert result.agreement_with_litert == 0.0 and len(result.disagreements) == result.samples
    assert result.reference_kernels_side_with_tflm == 0
    entry = {"format": "tflite-int8", "path": path.name, "tflm": result.to_dict()}
    [line] = tflm.warnings([entry])
    assert f"reference kernels answer as TFLM on 0 of those {result.samples}" in line and "not a TFLM fault" not in line
    entry["tflm"]["reference_kernels_side_with_tflm"] = result.samples  # every one: the rounding decides
    assert "not a TFLM fault" in tflm.warnings([entry])[0]


@needs_tflm
def test_an_operator_tflm_lacks_is_named_in_one_line(small, tmp_path):
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    _, path = small
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(path.read_bytes(), 0))
    for code in model.operatorCodes:  # SOFTMAX -> TOPK_V2, which TFLM has no kernel for
        if max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.TOPK_V2
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(builder.Output()))
    with pytest.raises(tflm.TFLMUnsupported) as err:
        tflm.measure_arena(bad)
    message = str(err.value)
    assert "TOPK_V2" in message and "bad.tflite" in message and "\n" not in message
    assert budget(path, arena_bytes=None, measure=False).arena_bytes is None


def test_without_tflite_micro_the_check_is_skipped_and_budgets_estimate(small, monkeypatch):
    splits, path = small
    monkeypatch.setattr(tflm, "available", lambda: False)
    result = tflm.check(load_exported(path), [s.path for s in splits.test], estimate_bytes=123)
    assert result.status == "skipped" and "pip install tflite-micro" in result.message
    assert result.agreement_with_litert is None and result.estimate_bytes == 123
    b = budget(path)
    assert b.arena_bytes is None and b.ram_bytes == b.peak_ram_bytes and b.ram_source == "estimated"
    assert tflm.warnings([{"format": "tflite-int8", "path": "m.tflite", "tflm": result.to_dict()}]) == []
    # The check affords 4 G MACs, 8 to 25 inferences: Lite0 at 224 px 10, aisfx (1.9 G per window) 8, a
    # microcontroller-size model (27 M) 25.
    assert [tflm.sample_count(m) for m in (384e6, 1.93e9, 27e6, None)] == [10, 8, 25, 25]


STUBS = {
    "TensorFlowLite.h": "#pragma once\n",
    "Arduino.h": "#pragma once\n",
    "tensorflow/lite/schema/schema_generated.h": "#pragma once\nnamespace tflite { struct Model {}; "
    "inline const Model* GetModel(const void*) { return nullptr; } }\n",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h": "#pragma once\nnamespace tflite {\n"
    "template <unsigned N> struct MicroMutableOpResolver {\n%s};\n}\n",
    "tensorflow/lite/micro/micro_interpreter.h": """#pragma once
#include <cstddef>
#include <cstdint>
#include "tensorflow/lite/schema/schema_generated.h"
enum TfLiteStatus { kTfLiteOk, kTfLiteError };
struct TfLiteQuantizationParams { float scale; int32_t zero_point; };
struct TfLiteTensor { union { int8_t* int8; float* f; } data; TfLiteQuantizationParams params; size_t bytes; };
namespace tflite {
struct MicroInterpreter {
  template <typename R> MicroInterpreter(const Model*, const R&, uint8_t*, size_t) {}
  TfLiteStatus AllocateTensors() { return kTfLiteOk; }
  TfLiteStatus Invoke() { return kTfLiteOk; }
  TfLiteTensor* input(size_t) { return nullptr; }
  TfLiteTensor* output(size_t) { return nullptr; }
};
}
""",
}


def _stub_tree(root, ops):
    """Stub TFLM headers declaring exactly the resolver methods the real library has for these ops."""
    adds = "".join(f"  TfLiteStatus {m}() {{ return kTfLiteOk; }}\n" for m in ops)
    for rel, text in STUBS.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if "mutable" in rel:
            text = text.replace("namespace tflite {\n", "#include \"tensorflow/lite/micro/micro_interpreter.h\"\n"
                                "namespace tflite {\n", 1) % adds
        f.write_text(text)
    arduino = root / "Arduino.h"  # what a sketch uses of the Arduino core
    arduino.write_text("#pragma once\n#include <cmath>\nstruct SerialT { void begin(long) {} explicit operator bool() "
                       "const { return true; } void print(const char*) {} void println(const char*) {} "
                       "void println(float, int) {} };\ninline SerialT Serial;\ninline void delay(unsigned long) {}\n")


def test_arduino_library_holds_the_bytes_and_the_input_recipe(small, tmp_path):
    splits, path = small
    meta = read_metadata(path)
    litert = load_exported(path)
    sample = splits.test[0]
    windows = litert.prepare(sample.path)
    name = library_name("My Data-10")
    assert name == "my_data_10_classifier" and library_name("10x") == "m_10x_classifier"
    ops = tflite_ops(path)
    root = write_library(path, tmp_path, meta, name, ops, windows[0], sample.path.name, 200_000, 150_000)
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "library.properties", f"src/{name}.h", f"src/{name}.cpp", f"examples/{name}/{name}.ino", "extras/main.cc"}
    props = dict(line.split("=", 1) for line in (root / "library.properties").read_text().splitlines())
    assert props["name"] == name and props["includes"] == f"{name}.h"
    source = (root / "src" / f"{name}.cpp").read_text()
    body = source[source.index("{") + 1 : source.index("};")]
    assert bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body)) == path.read_bytes()
    sketch = (root / "examples" / name / f"{name}.ino").read_text()
    scale = float(re.search(r"kInputScale = ([0-9.e+-]+)f;", sketch).group(1))
    zero = int(re.search(r"kInputZeroPoint = (-?\d+);", sketch).group(1))
    assert scale == pytest.approx(meta["tflite"]["input"]["scale"], rel=1e-7)
    assert zero == meta["tflite"]["input"]["zero_point"]
    assert int(re.search(r"kArenaSize = (\d+);", sketch).group(1)) >= 200_000
    assert "TFLite Micro measured 200000 bytes" in sketch
    pixels = re.search(r"g_input\[kInputCount\] = \{(.*?)\};", sketch, re.DOTALL).group(1)
    assert np.array_equal(np.array([int(v) for v in re.findall(r"\d+", pixels)]), windows[0].reshape(-1))
    assert f"MicroMutableOpResolver<{len(ops)}>" in sketch and "resolver.AddDepthwiseConv2D();" in sketch

    if not shutil.which("g++"):
        pytest.skip("no host C++ compiler")
    stubs = tmp_path / "stubs"
    _stub_tree(stubs, sorted({m for m in re.findall(r"resolver\.(Add\w+)\(\)", sketch)}))
    for f in (root / "examples" / name / f"{name}.ino", root / "extras" / "main.cc"):  # the array: test_tflite
        subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-x", "c++",
                        "-include", "Arduino.h" if f.suffix == ".ino" else "cstddef",
                        f"-I{stubs}", f"-I{root / 'src'}", str(f)], check=True, capture_output=True)


@needs_tflm
def test_cli_arduino_format_runs_tflm_and_records_it(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(out), "--no-augment", "--input-size", "96",
                                      "--formats", "arduino", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    exports = {e["format"]: e for e in metrics["exports"]}
    assert set(exports) == {"tflite-int8", "arduino"}  # the .tflite the library holds is evaluated too
    t = exports["tflite-int8"]["tflm"]
    assert t["status"] == "ok" and t["samples"] == t["of"] == metrics["splits"]["test"]
    assert t["agreement_with_litert"] >= 0.99 and t["arena_bytes"] == exports["tflite-int8"]["arena_bytes"] > 0
    assert t["estimate_bytes"] == exports["tflite-int8"]["peak_ram_bytes"]
    assert metrics["timings"]["export_steps"]["tflm_check_s"] > 0
    name = library_name(data.name)
    assert exports["arduino"]["path"] == f"{name}.zip" and exports["arduino"]["folder"] == f"arduino/{name}"
    assert (out / "arduino" / name / "examples" / name / f"{name}.ino").is_file()
    with zipfile.ZipFile(out / f"{name}.zip") as z:  # what the Arduino IDE's "Add .ZIP Library" takes
        assert f"{name}/examples/{name}/{name}.ino" in z.namelist() and f"{name}/library.properties" in z.namelist()
        assert z.read(f"{name}/src/{name}.h") == (out / "arduino" / name / "src" / f"{name}.h").read_bytes()
    report = (out / "report.html").read_text()
    assert "TensorFlow Lite Micro" in report and "agrees with LiteRT" in report
