"""Code to copy, generated from a model file's own recipe (its `edgemaker` metadata), so that what a
user pastes feeds the model exactly what `edgemaker predict` feeds it: the same decode, centre crop
and bicubic resize for images; the same downmix, resampling, silence removal, windows, log-mel and
mean of window probabilities for sounds.

The generated Python needs only numpy, Pillow, soundfile, soxr and onnxruntime or ai_edge_litert
(never edgemaker). Each function here is pure: metadata dict + file name -> code text.
`python -m edgemaker.export.snippets model_int8.onnx` prints them for a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8765"
BATCH = 16  # windows per ONNX Runtime call, as edgemaker's predict


@dataclass(frozen=True)
class Snippet:
    key: str  # edgemaker-cli, python-onnxruntime, python-litert, tflite-micro, http-api
    title: str
    language: str  # shell, python, cpp
    code: str

    def to_dict(self) -> dict:
        return asdict(self)


def _q(text: str) -> str:
    """A Python string literal in double quotes."""
    return json.dumps(text)


def default_sample(metadata: dict) -> str:
    return "photo.jpg" if metadata["input"]["kind"] == "image" else "clip.wav"


# -- input preparation (Python), shared by both runtimes ------------------------------------------

def _image_prep(inp: dict) -> str:
    size, pad = int(inp["size"]), int(inp["crop_padding"])
    return f'''SIZE, CROP_PADDING = {size}, {pad}  # from the model's metadata


def to_rgb(im):
    """16-bit and float images scaled to 8 bits; transparent pixels on white; everything else RGB."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if a.max(initial=0) > 65535 or a.min(initial=0) < 0:
            lo, hi = float(a.min()), float(a.max())
            a, top = a - lo, max(hi - lo, 1e-12)
        return Image.fromarray(np.clip(a * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im if im.mode == "RGB" else im.convert("RGB")


def model_inputs(path):
    """Image file -> uint8 (1, SIZE, SIZE, 3): upright RGB, centre crop SIZE/(SIZE+CROP_PADDING) of
    the short side, bicubic resize. Normalisation is inside the model."""
    im = Image.open(path)
    w, h = im.size
    side = SIZE + CROP_PADDING
    if im.format == "JPEG" and min(w, h) >= 2 * side:  # large JPEGs decode at a reduced scale, as in training
        scale = min(w, h) / side
        im.draft("RGB", (math.ceil(w / scale), math.ceil(h / scale)))
    im.seek(0)
    im.load()
    im = to_rgb(ImageOps.exif_transpose(im) or im)
    w, h = im.size
    crop = SIZE / (SIZE + CROP_PADDING) * min(w, h)
    cx, cy = w / 2.0, h / 2.0
    box = (cx - crop / 2, cy - crop / 2, cx + crop / 2, cy + crop / 2)
    return np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BICUBIC, box=box), np.uint8)[None]
'''


def _audio_prep(inp: dict) -> str:
    rate, window, hop = int(inp["sample_rate"]), int(inp["window_samples"]), int(inp["hop_samples"])
    silence = inp.get("silence_threshold_db")
    text = f'''RATE, WINDOW, HOP = {rate}, {window}, {hop}  # from the model's metadata
SILENCE_DB = {silence!r}  # 10 ms frames quieter than this (dBFS) are removed; None: keep all


def read_mono(path):
    """Any sound file -> mono float32 at RATE (downmix, then soxr HQ resampling, in 5 s blocks)."""
    with sf.SoundFile(path) as f:
        rs = None if f.samplerate == RATE else soxr.ResampleStream(f.samplerate, RATE, 1, dtype="float32", quality="HQ")
        parts = []
        for chunk in f.blocks(blocksize=max(1024, int(5.0 * f.samplerate)), dtype="float32", always_2d=True):
            mono = chunk.mean(axis=1, dtype=np.float32) if chunk.shape[1] > 1 else chunk[:, 0]
            parts.append(rs.resample_chunk(mono) if rs else mono)
        if rs:
            parts.append(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts).astype(np.float32)


def drop_silence(x):
    """Remove 10 ms frames (and a shorter tail) below SILENCE_DB; a clip silent throughout stays whole."""
    frame = max(1, int(round(0.01 * RATE)))
    threshold = 10.0 ** (SILENCE_DB / 20.0)
    n = len(x) // frame * frame
    frames = x[:n].reshape(-1, frame)
    parts = [frames[np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) >= threshold].reshape(-1)]
    if n < len(x) and np.sqrt((x[n:].astype(np.float64) ** 2).mean()) >= threshold:
        parts.append(x[n:])
    kept = np.concatenate(parts)
    return kept if len(kept) else x


def cut_windows(x):
    """Windows of WINDOW samples, HOP apart; a short clip is zero-padded to one window, and a tail
    holding at least half a hop of new sound is padded into a last window."""
    if len(x) < WINDOW:
        return np.pad(x, (0, WINDOW - len(x)))[None]
    k = (len(x) - WINDOW) // HOP + 1
    out = [x[i * HOP : i * HOP + WINDOW] for i in range(k)]
    rest = x[k * HOP :]
    if len(rest) - (WINDOW - HOP) >= HOP // 2:
        out.append(np.pad(rest, (0, WINDOW - len(rest))))
    return np.stack(out).astype(np.float32)
'''
    body = "drop_silence(read_mono(path))" if silence is not None else "read_mono(path)"
    if inp["kind"] == "logmel":
        text += f'''

def model_inputs(path):
    """Sound file -> float32 log-mel patches (windows, frames, mels), one per window."""
    return logmel(cut_windows({body}))
'''
    else:
        text += f'''

def model_inputs(path):
    """Sound file -> float32 waveform windows (windows, WINDOW) in [-1, 1]; the model computes its log-mel."""
    return cut_windows({body})
'''
    return text


def _logmel(backbone: str) -> str:
    """The product's numpy log-mel (backbones/frontends.py), with this backbone's constants."""
    from ..backbones.audio_backbones import FRONTENDS
    from ..backbones.frontends import MAD_TO_STD, SPREAD_FLOOR

    if backbone not in FRONTENDS:
        raise ValueError(f"no log-mel front end is known for backbone {backbone!r}")
    s = FRONTENDS[backbone]
    peak = ("    x = x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-8)  # each window peak-normalised\n"
            if s.peak_normalize else "")
    power = f" ** {s.power!r}" if s.power != 1.0 else ""
    norm = ("    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)  # each filter sums to 1\n"
            if s.mel_norm == "l1" else "")
    edges = ("    edges = mel_to_hz(np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), N_MELS + 2))\n"
             if s.mel_triangles == "hz" else  # TensorFlow's filters: triangles in mel, DC bin zero
             "    bins, edges = hz_to_mel(bins), np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), N_MELS + 2)\n")
    if s.mel_triangles == "mel":
        norm = "    weights[:, 0] = 0.0\n" + norm
    log = (f"np.log(mel + {s.log_offset!r})" if s.log == "ln_offset"
           else f"np.log10(mel * 1e4 + 1.0) / {s.log_scale!r}")
    ret = f"    return ({log}).astype(np.float32)"
    if s.standardise:  # backbones/frontends.py standardise_patch: part of the front end, not of the model
        # In float32, as the product: standardising the float64 log-mel rounds differently (~4e-7),
        # enough to move an int8 input that sits on a rounding boundary.
        ret = (f"    out = ({log}).astype(np.float32)\n"
               "    centred = out - out.mean(axis=(1, 2), keepdims=True)  # each patch standardised (float32):\n"
               f"    spread = np.maximum(np.abs(centred).mean(axis=(1, 2), keepdims=True) * {MAD_TO_STD!r}, {SPREAD_FLOOR!r})\n"
               "    return (centred / spread * 0.5).astype(np.float32)")
    return f'''# Log-mel front end of backbone {backbone}, as edgemaker computes it:
# {s.win_length}-sample periodic Hann frames every {s.hop_length} samples, {s.n_fft}-point FFT, {s.n_mels} HTK mel bands {s.fmin!r}-{s.fmax!r} Hz.
MEL_RATE, FFT_WIN, FFT_HOP, N_FFT, N_MELS, FMIN, FMAX = {s.sample_rate}, {s.win_length}, {s.hop_length}, {s.n_fft}, {s.n_mels}, {s.fmin!r}, {s.fmax!r}


def mel_matrix():
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)

    bins = np.linspace(0, MEL_RATE / 2, N_FFT // 2 + 1)
{edges}    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None] - lower) / np.maximum(centre - lower, 1e-9)
    down = (upper - bins[None]) / np.maximum(upper - centre, 1e-9)
    weights = np.maximum(0.0, np.minimum(up, down))
{norm}    return weights.T


def logmel(windows):
    """(windows, samples) -> float32 (windows, frames, N_MELS)."""
    x = np.asarray(windows, np.float64)
{peak}    n_frames = 1 + (x.shape[1] - FFT_WIN) // FFT_HOP
    idx = np.arange(FFT_WIN)[None] + FFT_HOP * np.arange(n_frames)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FFT_WIN) / FFT_WIN)
    spec = np.abs(np.fft.rfft(x[:, idx] * hann, n=N_FFT, axis=-1)){power}
    mel = spec @ mel_matrix()
{ret}

'''


def _imports(inp: dict, runtime_line: str, stdlib: Sequence[str]) -> str:
    image = inp["kind"] == "image"
    std = sorted({*stdlib, *(["math"] if image else [])})
    third = ["import numpy as np", runtime_line] + (
        ["from PIL import Image, ImageOps"] if image else ["import soundfile as sf", "import soxr"])
    lines = [f"import {m}" for m in std] + [""] + third
    return "\n".join(lines) + "\n\n\n"


def _prep(metadata: dict) -> str:
    inp = metadata["input"]
    if inp["kind"] == "image":
        return _image_prep(inp)
    return (_logmel(metadata["backbone"]) if inp["kind"] == "logmel" else "") + _audio_prep(inp)


def _header(metadata: dict, filename: str, runtime: str) -> str:
    what = "an image" if metadata["input"]["kind"] == "image" else "a sound"
    clip = "" if metadata["input"]["kind"] == "image" else " (a clip: the mean over its windows)"
    return (f"# {filename} with {runtime}: classify {what} exactly as `edgemaker predict` does{clip}.\n"
            f"# Generated by edgemaker from the model's metadata.\n")


def _report(sample: str) -> str:
    return f'''

path = sys.argv[1] if len(sys.argv) > 1 else {_q(sample)}
probs = predict(path)
for i in np.argsort(-probs):
    print(f"{{labels[i]}}\\t{{probs[i]:.6f}}")
'''


# -- the snippets ---------------------------------------------------------------------------------

def python_onnxruntime(metadata: dict, filename: str, sample: str | None = None) -> str:
    """Python + ONNX Runtime, for an .onnx file."""
    sample = sample or default_sample(metadata)
    inp = metadata["input"]
    dtype = "np.uint8" if inp["kind"] == "image" else "np.float32"
    return (_header(metadata, filename, "ONNX Runtime")
            + _imports(inp, "import onnxruntime as ort", ["json", "sys"])
            + _prep(metadata)
            + f'''

session = ort.InferenceSession({_q(filename)}, providers=["CPUExecutionProvider"])
labels = json.loads(session.get_modelmeta().custom_metadata_map["edgemaker"])["labels"]


def predict(path):
    x = model_inputs(path)
    rows = [session.run(["probabilities"], {{{_q(inp["name"])}: np.ascontiguousarray(x[i : i + {BATCH}], {dtype})}})[0]
            for i in range(0, len(x), {BATCH})]
    return np.concatenate(rows).astype(np.float64).mean(axis=0)
''' + _report(sample))


def _tflite_quant(metadata: dict) -> tuple[str, float, int, float, int]:
    q = metadata.get("tflite") or {}
    i, o = q.get("input", {}), q.get("output", {})
    return (i.get("dtype", metadata["input"].get("tflite_dtype", "int8")), float(i.get("scale", 0.0)),
            int(i.get("zero_point", 0)), float(o.get("scale", 0.0)), int(o.get("zero_point", 0)))


def python_litert(metadata: dict, filename: str, sample: str | None = None) -> str:
    """Python + LiteRT (ai_edge_litert), for a .tflite file; int8 input and output use the file's
    own scale and zero point (recorded in its metadata)."""
    sample = sample or default_sample(metadata)
    inp = metadata["input"]
    in_dtype, in_scale, in_zero, out_scale, out_zero = _tflite_quant(metadata)
    if in_dtype.startswith("float"):
        quant = f'''INPUT_DTYPE = np.{in_dtype}


def quantize(x):
    return x.astype(INPUT_DTYPE)
'''
    else:
        meaning = "pixel" if inp["kind"] == "image" else "log-mel value"
        quant = f'''# Integer input: q = round({meaning} / scale) + zero_point, clipped to {in_dtype} (the file's own scale and zero point).
INPUT_DTYPE, INPUT_SCALE, INPUT_ZERO_POINT = np.{in_dtype}, {in_scale!r}, {in_zero}


def quantize(x):
    info = np.iinfo(INPUT_DTYPE)
    return np.clip(np.round(x.astype(np.float32) / INPUT_SCALE) + INPUT_ZERO_POINT, info.min, info.max).astype(INPUT_DTYPE)
'''
    if out_scale:
        dequant = (f"OUTPUT_SCALE, OUTPUT_ZERO_POINT = {out_scale!r}, {out_zero}  # integer probabilities -> float\n")
        out_expr = "(y.astype(np.float32) - OUTPUT_ZERO_POINT) * OUTPUT_SCALE"
    else:
        dequant, out_expr = "", "y.astype(np.float32)"
    return (_header(metadata, filename, "LiteRT (TFLite)")
            + _imports(inp, "from ai_edge_litert.interpreter import Interpreter", ["json", "sys", "zipfile"])
            + _prep(metadata)
            + f'''
{quant}{dequant}
interpreter = Interpreter(model_path={_q(filename)})
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
with zipfile.ZipFile({_q(filename)}) as z:  # labels and recipe travel inside the .tflite
    labels = json.loads(z.read("edgemaker.json"))["labels"]


def run_one(x):
    interpreter.set_tensor(inp["index"], quantize(x.reshape(inp["shape"])))
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])[0]
    return {out_expr}


def predict(path):
    return np.stack([run_one(x) for x in model_inputs(path)]).astype(np.float64).mean(axis=0)
''' + _report(sample))


_TFLM_NAMES = {"BATCH_MATMUL": "BatchMatMul", "HARD_SWISH": "HardSwish", "LOG_SOFTMAX": "LogSoftmax",
               "L2_NORMALIZATION": "L2Normalization", "RELU_N1_TO_1": "ReluN1To1"}


def tflm_add(op: str) -> str:
    name = _TFLM_NAMES.get(op) or "".join(p if p[:1].isdigit() else p.capitalize() for p in op.lower().split("_"))
    return f"Add{name.replace('2d', '2D').replace('1d', '1D')}"


def tflite_micro(metadata: dict, filename: str, ops: Sequence[str] | None = None,
                 arena_bytes: int | None = None, array_name: str = "model_data") -> str:
    """TensorFlow Lite Micro (C++), for the full-int8 .tflite as a C array (`c-array` format):
    fill the int8 input from uint8 pixels or float log-mel, run, dequantize the probabilities."""
    inp = metadata["input"]
    camel = "".join(p.capitalize() for p in array_name.split("_"))
    _, in_scale, in_zero, out_scale, out_zero = _tflite_quant(metadata)
    uniq = sorted(dict.fromkeys(ops or []))
    if uniq:
        resolver = [f"  static tflite::MicroMutableOpResolver<{len(uniq)}> resolver;  // the operators {filename} uses"]
        resolver += [f"  resolver.{tflm_add(op)}();" for op in uniq]
    else:
        resolver = ["  static tflite::MicroMutableOpResolver<16> resolver;  // add every operator the model uses:",
                    "  resolver.AddConv2D(); resolver.AddDepthwiseConv2D(); resolver.AddFullyConnected(); resolver.AddSoftmax();"]
    arena = (f"constexpr size_t kArenaSize = {arena_bytes + 64 * 1024};  // tensor arena from the edgemaker run (measured by TFLite Micro when it was installed) + 64 kB"
             if arena_bytes else "constexpr size_t kArenaSize = 2 * 1024 * 1024;  // raise it if AllocateTensors() fails")
    if inp["kind"] == "image":
        size = int(inp["size"])
        what = (f"// pixels: {size}x{size}x3 RGB bytes, row-major: the centre crop of {size}/({size}+{inp['crop_padding']}) of the\n"
                f"// short side resized to {size}x{size} (bicubic), as the model was trained (normalisation is inside the model).")
        arg, count, value = "const uint8_t* pixels", f"{size} * {size} * 3", "pixels[i]"
    else:
        what = ("// logmel: one window's log-mel patch (frames x mels, row-major) computed as the metadata describes\n"
                f"// ({inp.get('frontend', 'log-mel')}); for a clip, average the probabilities of its windows.")
        arg, count, value = "const float* logmel", "input->bytes", "logmel[i]"
    return f'''// {filename} on a microcontroller with TensorFlow Lite Micro (the `c-array` export: {array_name}.h / {array_name}.cc).
// Generated by edgemaker from the model's metadata: input scale {in_scale!r}, zero point {in_zero};
// output scale {out_scale!r}, zero point {out_zero}.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "{array_name}.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

{arena}
alignas(16) static uint8_t g_arena[kArenaSize];

{what}
// probabilities: k{camel}NumLabels floats in the order of g_{array_name}_labels. Returns the top class or -1.
int Classify({arg}, float* probabilities) {{
  static const tflite::Model* model = tflite::GetModel(g_{array_name});
{chr(10).join(resolver)}
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaSize);
  static bool ready = interpreter.AllocateTensors() == kTfLiteOk;
  if (!ready) return -1;
  TfLiteTensor* input = interpreter.input(0);
  for (size_t i = 0; i < static_cast<size_t>({count}); ++i) {{
    const float q = std::round({value} / k{camel}InputScale) + k{camel}InputZeroPoint;
    input->data.int8[i] = static_cast<int8_t>(q < -128.f ? -128.f : (q > 127.f ? 127.f : q));
  }}
  if (interpreter.Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* output = interpreter.output(0);
  int best = 0;
  for (int c = 0; c < k{camel}NumLabels; ++c) {{
    probabilities[c] = (output->data.int8[c] - output->params.zero_point) * output->params.scale;
    if (probabilities[c] > probabilities[best]) best = c;
  }}
  return best;
}}
'''


def http_api(metadata: dict, filename: str, sample: str | None = None, base_url: str = DEFAULT_URL,
             project: str | None = None) -> str:
    """curl against `edgemaker serve`: a project's latest run, or this one file served on its own."""
    sample = sample or default_sample(metadata)
    lines = []
    if project is not None:
        from urllib.parse import quote

        lines += [f"# the latest finished run of project {project!r} on this server (JSON: top-k and every class):",
                  f"curl -F file=@{sample} '{base_url}/api/v1/predict?project_name={quote(project, safe='')}'", ""]
    lines += [f"# or serve {filename} on its own (anywhere edgemaker is installed), then post files to it:",
              f"edgemaker serve --model {filename} --no-browser &",
              f"curl -F file=@{sample} '{DEFAULT_URL}/api/v1/predict?top_k=3'"]
    return "\n".join(lines) + "\n"


def edgemaker_cli(metadata: dict, filename: str, sample: str | None = None) -> str:
    sample = sample or default_sample(metadata)
    windows = " --windows" if metadata["input"]["kind"] != "image" else ""
    return f"pip install edgemaker\nedgemaker predict {filename} {sample} --top-k 3{windows}\n"


def snippets_for(metadata: dict, filename: str, *, sample: str | None = None, base_url: str = DEFAULT_URL,
                 project: str | None = None, ops: Sequence[str] | None = None,
                 arena_bytes: int | None = None, c_array: bool | None = None) -> list[Snippet]:
    """Every snippet that applies to one model file. `c_array`: offer the TFLite Micro snippet
    (default: when the .tflite's input is integer, i.e. full int8)."""
    suffix = Path(filename).suffix.lower()
    out = [Snippet("edgemaker-cli", "Python, with edgemaker", "shell", edgemaker_cli(metadata, filename, sample))]
    if suffix == ".onnx":
        out.append(Snippet("python-onnxruntime", "Python, plain ONNX Runtime", "python",
                           python_onnxruntime(metadata, filename, sample)))
    elif suffix == ".tflite":
        out.append(Snippet("python-litert", "Python, LiteRT (TFLite)", "python", python_litert(metadata, filename, sample)))
        integer = not _tflite_quant(metadata)[0].startswith("float")
        if c_array if c_array is not None else integer:
            out.append(Snippet("tflite-micro", "Microcontroller, TensorFlow Lite Micro (C++)", "cpp",
                               tflite_micro(metadata, filename, ops, arena_bytes)))
    else:
        raise ValueError(f"{filename}: snippets exist for .onnx and .tflite files")
    out.append(Snippet("http-api", "HTTP API (edgemaker serve)", "shell",
                       http_api(metadata, filename, sample, base_url, project)))
    return out


# -- reading a file's metadata (not pure: the web route and the command line use these) -----------

def read_model_metadata(path: Path) -> dict | None:
    """The `edgemaker` metadata of an .onnx or .tflite file (or the JSON beside it); None if absent."""
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        from .tflite import read_metadata

        meta = read_metadata(path)
        beside = path.with_name(path.name + ".json")
        if meta is None and beside.is_file():
            meta = json.loads(beside.read_text("utf-8"))
        return meta
    import onnx

    from .metadata import METADATA_KEY

    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else None
    except Exception:  # noqa: BLE001 - protobuf/JSON errors of a damaged file: not a readable model
        return None


def tflite_ops(path: Path) -> list[str] | None:
    """Operator names of a .tflite file (for the TFLite Micro resolver); None without LiteRT."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        return None
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return sorted({op["op_name"] for op in it._get_ops_details()})


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m edgemaker.export.snippets MODEL_FILE(.onnx|.tflite)", file=sys.stderr)
        return 2
    path = Path(args[0])
    if not path.is_file():
        print(f"error: {path}: file not found; pass an exported .onnx or .tflite", file=sys.stderr)
        return 2
    meta = read_model_metadata(path)
    if meta is None:
        print(f"error: {path}: not an edgemaker model file (no metadata); pass an exported .onnx or .tflite",
              file=sys.stderr)
        return 2
    ops = tflite_ops(path) if path.suffix.lower() == ".tflite" else None
    for s in snippets_for(meta, path.name, ops=ops):
        print(f"## {s.title}\n\n{s.code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
