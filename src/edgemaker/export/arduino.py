"""`--formats arduino`: the full-int8 .tflite as an Arduino library, laid out as the TensorFlow Lite
Micro Arduino examples are (library.properties, src/, examples/<name>/<name>.ino), plus a plain
main.cc for other toolchains. The input quantization is written out as code with the file's own
scale and zero point, so nobody has to find them; the example input is one real test file, and the
comment says what LiteRT predicted for it. The arena size is the one TFLM measured (tflm.py), with
headroom for optimized kernels' scratch buffers; without a measurement, the liveness estimate.

Build: install the TensorFlow Lite Micro Arduino library (github.com/tensorflow/tflite-micro-arduino-examples,
`Arduino_TensorFlowLite`), then add <name>.zip (Sketch > Include Library > Add .ZIP Library) or copy the
folder into your Arduino `libraries/` folder, and open the example.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_text
from .device import write_c_array
from .snippets import tflm_add

ARENA_HEADROOM = 1.25  # optimized kernels (CMSIS-NN, ESP-NN) ask for scratch buffers the reference ones do not


def library_name(text: str) -> str:
    """A C identifier and Arduino library name from a folder name: 'caltech-dev10' -> 'caltech_dev10_classifier'."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "edgemaker"
    return f"{'m_' if slug[0].isdigit() else ''}{slug}_classifier"


def arena_size(arena_bytes: int | None, estimate_bytes: int) -> tuple[int, str]:
    """(bytes to declare, why) rounded up to whole KiB."""
    if arena_bytes:
        n, why = arena_bytes * ARENA_HEADROOM, (f"TFLite Micro measured {arena_bytes} bytes (reference kernels); "
                                                f"+{round(100 * (ARENA_HEADROOM - 1))}% for optimized kernels' scratch buffers")
    else:
        n, why = estimate_bytes * 2, f"estimated {estimate_bytes} bytes (not measured: tflite-micro missing); x2 to be safe"
    return int(-(-n // 1024) * 1024), why


def _c_values(x: np.ndarray, kind: str) -> list[str]:
    flat = x.reshape(-1)
    if kind == "image":
        items = [str(int(v)) for v in flat.astype(np.uint8)]
    else:
        items = [f"{float(v)!r}f" for v in flat.astype(np.float32)]
    return [", ".join(items[i : i + 16]) + "," for i in range(0, len(items), 16)]


def program(name: str, metadata: dict, ops: list[str], arena: tuple[int, str], example: np.ndarray,
            example_note: str, arduino: bool) -> str:
    """The example program: fill the input from a buffer, quantize it, invoke, print the top class."""
    kind = "image" if metadata["input"]["kind"] == "image" else "audio"
    q = metadata["tflite"]["input"]
    scale, zero = float(q["scale"]), int(q["zero_point"])
    elem = "uint8_t" if kind == "image" else "float"
    meaning = "RGB pixels (row-major, HxWx3)" if kind == "image" else "log-mel values of one window (frames x mels)"
    uniq = sorted(dict.fromkeys(ops))
    say = (f"  Serial.print(\"top class: \");\n  Serial.print(g_{name}_labels[best]);\n  Serial.print(\" \");\n"
           "  Serial.println(probability, 4);\n") if arduino else \
        f'  std::printf("top class: %s %.4f\\n", g_{name}_labels[best], static_cast<double>(probability));\n'
    fail = ("  Serial.println(message);\n  return -1;" if arduino else
            "  std::printf(\"%s\\n\", message);\n  return -1;")
    head = "\n".join([
        f"// {name}: run the edgemaker classifier with TensorFlow Lite Micro{' on an Arduino board' if arduino else ''}.",
        f"// Input: {np.prod(example.shape)} {elem} {meaning}. The example buffer below is {example_note}.",
        *([ "#include <TensorFlowLite.h>", ""] if arduino else []),
        *(["#include <cmath>", "#include <cstdint>", "#include <cstdio>", ""] if not arduino else ["#include <math.h>", ""]),
        f'#include "{name}.h"',
        '#include "tensorflow/lite/micro/micro_interpreter.h"',
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        '#include "tensorflow/lite/schema/schema_generated.h"', ""])
    return head + f"""
// The input recipe of the model file, as code: q = round(x / scale) + zero_point, clipped to int8.
constexpr float kInputScale = {scale!r}f;
constexpr int kInputZeroPoint = {zero};
constexpr int kInputCount = {int(np.prod(example.shape))};

// Tensor arena: {arena[1]}.
constexpr int kArenaSize = {arena[0]};
alignas(16) static uint8_t g_arena[kArenaSize];

// Replace with your own input ({meaning}), prepared as edgemaker's metadata describes.
static const {elem} g_input[kInputCount] = {{
{chr(10).join('  ' + row for row in _c_values(example, kind))}
}};

static tflite::MicroInterpreter* g_interpreter = nullptr;

static int Fail(const char* message) {{
{fail}
}}

static int Setup() {{
  const tflite::Model* model = tflite::GetModel(g_{name});
  static tflite::MicroMutableOpResolver<{len(uniq)}> resolver;  // the operators the model uses
{chr(10).join(f'  resolver.{tflm_add(op)}();' for op in uniq)}
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors() failed: raise kArenaSize");
  g_interpreter = &interpreter;
  return 0;
}}

static int ClassifyInput() {{
  TfLiteTensor* input = g_interpreter->input(0);
  for (int i = 0; i < kInputCount; ++i) {{
    const float q = roundf(static_cast<float>(g_input[i]) / kInputScale) + kInputZeroPoint;
    input->data.int8[i] = static_cast<int8_t>(q < -128.f ? -128.f : (q > 127.f ? 127.f : q));
  }}
  if (g_interpreter->Invoke() != kTfLiteOk) return Fail("Invoke() failed");
  const TfLiteTensor* output = g_interpreter->output(0);
  int best = 0;
  for (int c = 1; c < k{_camel(name)}NumLabels; ++c) {{
    if (output->data.int8[c] > output->data.int8[best]) best = c;
  }}
  const float probability = (output->data.int8[best] - output->params.zero_point) * output->params.scale;
{say}  return best;
}}
""" + ("""
void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  Setup();
}

void loop() {
  if (g_interpreter != nullptr) ClassifyInput();
  delay(2000);
}
""" if arduino else """
int main() {
  if (Setup() != 0) return 1;
  return ClassifyInput() < 0 ? 1 : 0;
}
""")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def write_library(tflite: Path, out_dir: Path, metadata: dict, name: str, ops: list[str], example: np.ndarray,
                  example_note: str, arena_bytes: int | None, estimate_bytes: int) -> Path:
    """out_dir/<name>/: the Arduino library; returns its folder."""
    root = out_dir / name
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    _, cc = write_c_array(tflite, src, metadata, name)
    os.replace(cc, cc.with_suffix(".cpp"))  # the Arduino builder compiles .cpp
    arena = arena_size(arena_bytes, estimate_bytes)
    write_text(root / "library.properties", "\n".join([
        f"name={name}", "version=1.0.0", "author=edgemaker", "maintainer=edgemaker",
        f"sentence=A {len(metadata['labels'])}-class int8 classifier for TensorFlow Lite Micro, made by edgemaker.",
        "paragraph=Needs the TensorFlow Lite Micro Arduino library (Arduino_TensorFlowLite).",
        "category=Data Processing", "url=https://github.com/tensorflow/tflite-micro-arduino-examples",
        "architectures=*", f"includes={name}.h", ""]))
    sketch = root / "examples" / name / f"{name}.ino"
    sketch.parent.mkdir(parents=True, exist_ok=True)
    write_text(sketch, program(name, metadata, ops, arena, example, example_note, arduino=True))
    plain = root / "extras" / "main.cc"  # extras/ is ignored by the Arduino builder
    plain.parent.mkdir(parents=True, exist_ok=True)
    write_text(plain, "// Build: g++ main.cc ../src/*.cpp + the TensorFlow Lite Micro library, -I../src -I<tflite-micro>.\n"
               + program(name, metadata, ops, arena, example, example_note, arduino=False))
    return root


def zip_library(root: Path, target: Path) -> Path:
    """The library as the zip the Arduino IDE adds (one top folder named as the library), atomically."""
    with atomic_path(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            z.write(f, f"{root.name}/{f.relative_to(root).as_posix()}")
    return target

