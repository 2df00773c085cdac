"""Convert pretrained TensorFlow weights (Keras .h5, TFLite) into the files the package ships.

    python tools/convert_weights.py [--weights ../shared/weights] [NAME ...]

Run once per network, by a developer, never by the product: it checks each source's sha256
(from its SOURCE.md), reads its tensors (.h5 with h5py, a dev-only dependency; .tflite through
LiteRT's flatbuffer schema), rebuilds the network with edgemaker.backbones.tfnet, compares it to the
source's own output where a runtime for it exists (the TFLite interpreter's feature tensor), and
writes into src/edgemaker/backbones/weights_data/NAME/:
  weights.npz  state-dict tensors (float as the source; int8/uint8 + scales where it is quantised)
  LICENSE      the source's licence file
  ORIGIN.md    source repository/commit, sha256 of input and output, and the measured check
and the fixture image's pooled features into tests/data/tfnet/NAME.npz, so a test proves the
shipped weights and the rebuilt network still give the source's features without ../shared.

A new network is one more `Conversion` in CONVERSIONS (a reader of its tensors, a builder of its
network, the preprocessing, the reference check); nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgemaker.backbones import tfnet, yamnet  # noqa: E402
from edgemaker.backbones.tfnet import Quantised  # noqa: E402
from edgemaker.backbones.weights import sha256_file as sha256  # noqa: E402

OUT = ROOT / "src" / "edgemaker" / "backbones" / "weights_data"
TEST_DATA = ROOT / "tests" / "data" / "tfnet"
FIXTURE = TEST_DATA / "fixture.png"
FIXTURE_SIZE = 224


# --- sources ------------------------------------------------------------------------------------

def read_h5(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Keras .h5 -> {layer: {weight name without ':0': array}} (from model_weights)."""
    import h5py

    layers: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                layer, _, rest = name.partition("/")
                layers.setdefault(layer, {})[rest.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj)

        group.visititems(visit)
    return layers


@dataclass
class TFLiteTensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None  # constant tensors only
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int

    def value(self) -> np.ndarray | Quantised:
        """Float arrays as they are; integer weights kept quantised."""
        assert self.data is not None, f"{self.name} is not a constant"
        if self.data.dtype in (np.float32, np.float16) or not self.scale.size:
            return self.data.astype(np.float32)
        return Quantised(self.data, self.scale, self.zero_point)

    def dequantised(self) -> np.ndarray:
        value = self.value()
        if isinstance(value, Quantised):
            if self.scale.size > 1 and self.axis != 0:
                moved = np.moveaxis(self.data, self.axis, 0)
                return np.moveaxis(Quantised(moved, self.scale, self.zero_point).dequantise(), 0, self.axis)
            return value.dequantise()
        return value


@dataclass
class TFLiteOp:
    kind: str  # "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", ...
    inputs: list[TFLiteTensor | None]
    outputs: list[TFLiteTensor]
    options: dict = field(default_factory=dict)


def read_tflite(path: Path) -> list[TFLiteOp]:
    """The operators of a .tflite's main graph in execution order, with their constant tensors."""
    from ai_edge_litert import schema_py_generated as fb

    data = path.read_bytes()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {fb.TensorType.FLOAT32: np.float32, fb.TensorType.FLOAT16: np.float16, fb.TensorType.INT8: np.int8,
              fb.TensorType.UINT8: np.uint8, fb.TensorType.INT32: np.int32, fb.TensorType.INT64: np.int64}
    graph = model.subgraphs[0]

    def tensor(i: int) -> TFLiteTensor | None:
        if i < 0:
            return None
        t = graph.tensors[i]
        buf = model.buffers[t.buffer]
        array = None
        if buf.data is not None and len(buf.data):
            array = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), dtypes[t.type]).reshape(t.shape)
        elif getattr(buf, "offset", 0) and buf.offset > 1:
            array = np.frombuffer(data, dtypes[t.type], count=int(np.prod(t.shape)), offset=buf.offset).reshape(t.shape)
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zero = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        return TFLiteTensor(name, tuple(int(s) for s in t.shape), array, scale, zero,
                            int(q.quantizedDimension) if q is not None else 0)

    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
        options = vars(op.builtinOptions) if op.builtinOptions is not None else {}
        ops.append(TFLiteOp(kind, [tensor(i) for i in op.inputs], [tensor(i) for i in op.outputs], options))
    return ops


def tflite_feature(path: Path, tensor_name: str, image: np.ndarray) -> np.ndarray:
    """Run the TFLite model on one uint8 image (H, W, 3) and return `tensor_name` dequantised."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
    it.invoke()
    for d in it.get_tensor_details():
        if d["name"].split(";")[0] == tensor_name:  # the converter joins fused ops' names with ";"
            scale, zero = d["quantization"]
            raw = it.get_tensor(d["index"]).astype(np.float64)
            return ((raw - zero) * scale if scale else raw).astype(np.float32)
    raise KeyError(f"{path.name}: no tensor {tensor_name!r}")


# --- MobileNetV1 ----------------------------------------------------------------------------------

def v1_from_keras(layers: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Keras MobileNet (conv1, conv_dw_i, conv_pw_i, each + _bn) -> tfnet.MobileNetV1 state dict."""
    out: dict[str, np.ndarray] = {}

    def block(keras: str, prefix: str, layout):
        w = layers[keras]
        out[f"{prefix}.conv.weight"] = layout(w["depthwise_kernel"] if "depthwise_kernel" in w else w["kernel"])
        bn = layers[f"{keras}_bn"]
        out.update(tfnet.keras_batchnorm(f"{prefix}.bn", bn["gamma"], bn["beta"], bn["moving_mean"],
                                         bn["moving_variance"]))

    block("conv1", "stem", tfnet.keras_conv)
    i = 1
    while f"conv_dw_{i}" in layers:
        block(f"conv_dw_{i}", f"blocks.{i - 1}.dw", tfnet.keras_depthwise)
        block(f"conv_pw_{i}", f"blocks.{i - 1}.pw", tfnet.keras_conv)
        i += 1
    return out


def v1_from_tflite(ops: list[TFLiteOp]) -> dict[str, np.ndarray | Quantised]:
    """TF-slim MobileNetV1 TFLite (BN folded): stem conv, then depthwise/pointwise pairs; the final
    1x1 logits convolution is the ImageNet head and is left out."""
    convs = [op for op in ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")][:-1]
    prefixes = ["stem"] + [f"blocks.{i // 2}.{'dw' if i % 2 == 0 else 'pw'}" for i in range(len(convs) - 1)]
    return convs_from_tflite(ops, prefixes, [TFLITE_RELU6] * len(prefixes))


def v1_strides_from_tflite(ops: list[TFLiteOp]) -> list[int]:
    return [op.options["strideH"] for op in ops if op.kind == "DEPTHWISE_CONV_2D"]


# --- YAMNet and MobileNetV2 -----------------------------------------------------------------------

TFLITE_RELU, TFLITE_RELU6 = 1, 3  # TFLite's fused activation codes


def convs_from_tflite(ops: list[TFLiteOp], prefixes: list[str],
                      activations: list[int]) -> dict[str, np.ndarray | Quantised]:
    """The CONV_2D / DEPTHWISE_CONV_2D ops in order -> `prefix.conv.weight` / `.bias` (BN folded),
    each checked for SAME padding and its fused activation (a layout mistake fails here, not later)."""
    convs = [op for op in ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")][:len(prefixes)]
    assert len(convs) == len(prefixes) == len(activations), "the graph has fewer convolutions than the network"
    out: dict[str, np.ndarray | Quantised] = {}
    for op, prefix, act in zip(convs, prefixes, activations):
        layout = tfnet.tflite_depthwise if op.kind == "DEPTHWISE_CONV_2D" else tfnet.tflite_conv
        assert op.options.get("padding") == 0, f"{prefix}: expected SAME padding"
        assert op.options.get("fusedActivationFunction") == act, f"{prefix}: expected activation {act}"
        value = op.inputs[1].value()
        out[f"{prefix}.conv.weight"] = value.transposed(layout) if isinstance(value, Quantised) else layout(value)
        out[f"{prefix}.conv.bias"] = op.inputs[2].dequantised()
    return out


def conv_prefixes(net) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, tfnet.ConvBlock)]


def yamnet_from_tflite(ops: list[TFLiteOp]) -> dict[str, np.ndarray | Quantised]:
    """TF-Hub YAMNet as a dynamic-range int8 TFLite: 27 convolutions (ReLU, BN folded, int8 per
    channel where large), then the AudioSet classifier (FULLY_CONNECTED, int8 per tensor)."""
    prefixes = conv_prefixes(yamnet.network())
    out = convs_from_tflite(ops, prefixes, [TFLITE_RELU] * len(prefixes))
    (dense,) = [op for op in ops if op.kind == "FULLY_CONNECTED" and op.inputs[1].shape == (521, 1024)]
    out["classifier.weight"] = dense.inputs[1].value()
    out["classifier.bias"] = dense.inputs[2].dequantised()
    return out


def v2_from_tflite(ops: list[TFLiteOp]) -> dict[str, np.ndarray | Quantised]:
    """TF-slim MobileNetV2 TFLite (BN folded): ReLU6 everywhere but the linear projections; the
    1001-class logits convolution after the average pool is the ImageNet head and is left out."""
    prefixes = conv_prefixes(tfnet.mobilenet_v2(bn=False))
    acts = [0 if p.endswith(".project") else TFLITE_RELU6 for p in prefixes]
    return convs_from_tflite(ops, prefixes, acts)


def _v2_tflite_reference(path: Path, image: np.ndarray) -> np.ndarray:
    return tflite_feature(path, "MobilenetV2/Logits/AvgPool", image).reshape(-1)


# --- the table ------------------------------------------------------------------------------------

@dataclass
class Conversion:
    """One shipped network: where it comes from and how to rebuild and check it."""

    name: str
    source: str  # path under the weights folder
    sha256: str
    origin: str  # repository@commit and path (the ORIGIN.md text)
    licence: str  # licence file beside the source
    tensors: Callable[[Path], dict]  # source file -> state dict (arrays or Quantised)
    build: Callable[[], object]  # -> the float torch network (N, 3, S, S) -> (N, C, h, w)
    size: int  # fixture input size for the stored vector
    mean: float
    std: float
    # (source file, uint8 image) -> the source's own pooled features, or None where no runtime for it exists
    reference: Callable[[Path, np.ndarray], np.ndarray] | None = None
    # (source file, weights folder, rebuilt network) -> more measured evidence for ORIGIN.md
    check: Callable[[Path, Path, object], dict] | None = None
    notes: str = ""
    # False: not an image network (YAMNet); its `check` stores the test's values itself
    image_fixture: bool = True


def _photos(weights_dir: Path, per_class: int, size: int) -> list[np.ndarray]:
    """A few caltech-dev10 photos (centre-cropped, resized) for checks that need real pictures."""
    from PIL import Image

    out = []
    for folder in sorted((weights_dir.parent / "data" / "caltech-dev10").iterdir()):
        for path in sorted(folder.glob("*.jpg"))[:per_class]:
            im = Image.open(path).convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            out.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)))
    return out


def _v1_keras_head_check(src: Path, weights_dir: Path, net) -> dict:
    """No Keras runtime here, so the float .h5 rebuild is checked through its own ImageNet head: its
    top-1 class on real photos against Google's uint8 TFLite MobileNetV1 0.25/128 (an independent
    file of the same architecture; its 1001 classes start with "background")."""
    import torch

    head = read_h5(src)["conv_preds"]
    kernel = torch.from_numpy(head["kernel"].reshape(-1, head["kernel"].shape[-1]))
    bias = torch.from_numpy(head["bias"])
    tflite = weights_dir / "mobilenet_v1_0.25_128_quant_imagenet_tflite/mobilenet_v1_0.25_128_quant.tflite"
    photos = _photos(weights_dir, 3, 128)
    agree = 0
    for photo in photos:
        x = torch.from_numpy((photo.astype(np.float32) - 127.5) / 127.5).permute(2, 0, 1)[None]
        with torch.no_grad():
            ours = int((net(x).mean(dim=(2, 3)) @ kernel + bias).argmax())
        theirs = int(tflite_feature(tflite, "MobilenetV1/Predictions/Reshape_1", photo).argmax()) - 1
        agree += ours == theirs
    return {"imagenet_top1_agreement_with_tflite_0.25_128": agree / len(photos), "photos": len(photos)}


def _v1_tflite_reference(path: Path, image: np.ndarray) -> np.ndarray:
    fmap = tflite_feature(path, "MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6", image)
    return fmap.mean(axis=(1, 2))[0]


YAMNET_TEST_AUDIO = ("yamnet_audioset_int8_spectra_in_tflite/yamnet_test_audio.bin",
                     "5395801333be842af0a9fffe8d699c199c10f83fbaff6f2fb79cbf56121fdc6f")
YAMNET_EXCERPT = 1840  # the clip's first samples, as tests/data/yamnet_frontend.npz keeps them (10 frames)


def _yamnet_tflite(path: Path, waveform: np.ndarray) -> dict[str, np.ndarray]:
    """The TFLite YAMNet on one 15600-sample window: its log-mel, embedding and 521 scores."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], waveform.astype(np.float32))
    it.invoke()
    names = {d["name"].split(";")[0]: d["index"] for d in it.get_tensor_details()}
    return {"logmel": it.get_tensor(names["yamnet_frames/tf_op_layer_Log/Log"]),
            "embedding": it.get_tensor(names["yamnet_frames/global_average_pooling2d/Mean"])[0],
            "scores": it.get_tensor(it.get_output_details()[0]["index"])[0]}


def _yamnet_rebuilt(net, logmel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rebuilt YAMNet (with its classifier) on one log-mel patch -> (embedding, 521 scores)."""
    import torch

    with torch.no_grad():
        emb = net(torch.from_numpy(np.asarray(logmel, np.float32))[None, None]).mean(dim=(2, 3))
        return emb[0].numpy(), torch.sigmoid(net.classifier(emb))[0].numpy()


def _yamnet_check(src: Path, weights_dir: Path, net) -> dict:
    """Rebuilt YAMNet vs the TFLite interpreter on Google's test clip (speech): fed the interpreter's
    own log-mel (the network alone) and from the waveform through our front end (both). The TFLite
    file computes with int8-quantised activations (dynamic range), the rebuild in float: the errors
    are that difference. Stores the excerpt's values for tests/test_paper_backbones.py."""
    from edgemaker.backbones.frontends import YAMNET_LOGMEL

    path = weights_dir / YAMNET_TEST_AUDIO[0]
    if sha256(path) != YAMNET_TEST_AUDIO[1]:
        raise SystemExit(f"{path}: not Google's YAMNet test clip (sha256 differs)")
    clip = np.fromfile(path, np.int16) / 32768.0
    ref = _yamnet_tflite(src, clip)
    check = {}
    for label, logmel in (("network", ref["logmel"]), ("waveform", YAMNET_LOGMEL.compute(clip))):
        emb, scores = _yamnet_rebuilt(net, logmel)
        check[f"{label}_embedding_max_abs_error"] = float(np.abs(emb - ref["embedding"]).max())
        check[f"{label}_embedding_relative_error"] = float(np.linalg.norm(emb - ref["embedding"])
                                                           / np.linalg.norm(ref["embedding"]))
        check[f"{label}_scores_max_abs_error"] = float(np.abs(scores - ref["scores"]).max())
    check.update(top_class=int(scores.argmax()), top_score=float(scores.max()),
                 tflite_top_class=int(ref["scores"].argmax()), tflite_top_score=float(ref["scores"].max()))
    excerpt = np.zeros_like(clip)
    excerpt[:YAMNET_EXCERPT] = clip[:YAMNET_EXCERPT]
    emb, scores = _yamnet_rebuilt(net, YAMNET_LOGMEL.compute(excerpt))
    ref = _yamnet_tflite(src, excerpt)
    check["excerpt_scores_max_abs_error"] = float(np.abs(scores - ref["scores"]).max())
    TEST_DATA.mkdir(parents=True, exist_ok=True)
    np.savez(TEST_DATA / "yamnet.npz", embedding=emb.astype(np.float32), scores=scores.astype(np.float32),
             tflite_scores=ref["scores"].astype(np.float32), excerpt_samples=YAMNET_EXCERPT,
             excerpt_scores_max_abs_error=check["excerpt_scores_max_abs_error"])
    return check


CONVERSIONS = [
    Conversion(
        name="mobilenet_v1_025",
        source="mobilenet_v1_0.25_224_imagenet_keras/mobilenet_v1_0.25_224.h5",
        sha256="dc1ff623e6cd99c3cc0dd2821ca0807ba013606af5a4e2afd4488fbf26a8b589",
        origin="STMicroelectronics/stm32ai-modelzoo@f501e52ee1f0ba8854b3ee958a7dc7b9e21a791a, "
               "image_classification/models/mobilenetv1/Public_pretrainedmodel_public_dataset/ImageNet/"
               "mobilenet_v1_0.25_224/mobilenet_v1_0.25_224.h5 (Google's TF-slim MobileNet_v1_0.25_224 "
               "ImageNet checkpoint as tf.keras.applications.MobileNet(alpha=0.25))",
        licence="mobilenet_v1_0.25_224_imagenet_keras/LICENSE.md",
        tensors=lambda p: v1_from_keras(read_h5(p)),
        build=lambda: tfnet.mobilenet_v1(0.25),
        size=128, mean=127.5, std=127.5,
        check=_v1_keras_head_check,
        notes="float32 Keras weights, BatchNorm unfolded (eps 1e-3); the 1000-class head is dropped.",
    ),
    Conversion(
        name="mobilenet_v1_050",
        source="mobilenet_v1_0.5_160_quant_imagenet_tflite/mobilenet_v1_0.5_160_quant.tflite",
        sha256="3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43",
        origin="google-coral/test_data@104342d2d3480b3e66203073dac24f4e2dbb4c41, "
               "mobilenet_v1_0.5_160_quant.tflite (Google's hosted mobilenet_v1_0.5_160_quant)",
        licence="mobilenet_v1_0.5_160_quant_imagenet_tflite/LICENSE",
        tensors=lambda p: v1_from_tflite(read_tflite(p)),
        build=lambda: tfnet.mobilenet_v1(0.5, bn=False),
        size=160, mean=128.0, std=128.0,
        reference=_v1_tflite_reference,
        notes="uint8 weights kept as stored with their per-tensor scale and zero point (dequantised at "
              "load); BatchNorm folded into float biases; the 1001-class head is dropped.",
    ),
    Conversion(
        name="yamnet",
        source="yamnet_audioset_tflite_dynint8/yamnet.tflite",
        sha256="687f226c147a2caab4706fbbab5e9cecb14b9a368264bf61108078b1fddf68f5",
        origin="Dhiveej/Aranyadhwani@9d84fed7f21866c52055fd14b216c36b0294ccf1, yamnet.tflite (TF-Hub "
               "google/yamnet/1 converted with dynamic-range quantisation: Google's YAMNet weights in int8)",
        licence="yamnet_audioset_tflite_dynint8/LICENSE",
        tensors=lambda p: yamnet_from_tflite(read_tflite(p)),
        build=lambda: yamnet.network(with_classifier=True),
        size=0, mean=0.0, std=1.0,  # not an image network
        check=_yamnet_check,
        image_fixture=False,
        notes="int8 per-channel weights kept as stored with their scales (dequantised at load), BatchNorm "
              "folded into float biases; the 521-class AudioSet classifier kept as `classifier`; input: "
              "the 96 x 64 log-mel patch of edgemaker.backbones.frontends.YAMNET_LOGMEL, one channel",
    ),
    Conversion(
        name="mobilenet_v2",
        source="mobilenet_v2_1.0_224_quant_imagenet_tflite/mobilenet_v2_1.0_224_quant.tflite",
        sha256="7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
        origin="google-coral/test_data@104342d2d3480b3e66203073dac24f4e2dbb4c41, "
               "mobilenet_v2_1.0_224_quant.tflite (Google's hosted TF-slim mobilenet_v2_1.0_224_quant, "
               "quantisation-aware trained)",
        licence="mobilenet_v2_1.0_224_quant_imagenet_tflite/LICENSE",
        tensors=lambda p: v2_from_tflite(read_tflite(p)),
        build=lambda: tfnet.mobilenet_v2(bn=False),
        size=224, mean=128.0, std=128.0,
        reference=_v2_tflite_reference,
        notes="uint8 weights kept as stored with their per-tensor scale and zero point (dequantised at "
              "load); BatchNorm folded into float biases; the 1001-class head is dropped.",
    ),
]


# --- converting -----------------------------------------------------------------------------------

def fixture_image() -> np.ndarray:
    """A deterministic, asymmetric test picture (smooth colour waves, a disc and a bar), written
    once: a half-pixel padding shift or a transposed kernel changes its features."""
    if FIXTURE.is_file():
        from PIL import Image

        return np.asarray(Image.open(FIXTURE).convert("RGB"))
    rng = np.random.default_rng(24)
    yy, xx = np.mgrid[0:FIXTURE_SIZE, 0:FIXTURE_SIZE].astype(np.float64) / FIXTURE_SIZE
    img = np.zeros((FIXTURE_SIZE, FIXTURE_SIZE, 3))
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(1, 9), rng.uniform(1, 9), rng.uniform(0, 6.3)
            img[..., c] += np.sin(2 * np.pi * (fx * xx + fy * yy * xx) + ph)
    img = (img - img.min()) / (img.max() - img.min()) * 200
    img[(xx - 0.3) ** 2 + (yy - 0.62) ** 2 < 0.02] = (250, 240, 30)
    img[(np.abs(yy - 0.25) < 0.04) & (xx > 0.45)] = (20, 30, 200)
    out = img.clip(0, 255).astype(np.uint8)
    from PIL import Image

    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(FIXTURE)
    return out


def centre(image: np.ndarray, size: int) -> np.ndarray:
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


def rebuilt_features(conv: Conversion, weights: Path, image: np.ndarray) -> np.ndarray:
    import torch

    net = tfnet.load_into(conv.build(), tfnet.load_weights(weights), str(weights))
    x = torch.from_numpy((image.astype(np.float32) - conv.mean) / conv.std).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net(x).mean(dim=(2, 3))[0].numpy()


def convert(conv: Conversion, weights_dir: Path) -> dict:
    src = weights_dir / conv.source
    got = sha256(src)
    if got != conv.sha256:
        raise SystemExit(f"{src}: sha256 {got} is not the recorded {conv.sha256}: not the expected source")
    out = OUT / conv.name
    out.mkdir(parents=True, exist_ok=True)
    tfnet.save_weights(out / "weights.npz", conv.tensors(src))
    shutil.copyfile(weights_dir / conv.licence, out / "LICENSE")
    check = {}
    if conv.image_fixture:
        image = centre(fixture_image(), conv.size)
        features = rebuilt_features(conv, out / "weights.npz", image)
    if conv.reference is not None:
        ref = conv.reference(src, image)
        check = {"max_abs_error": float(np.abs(features - ref).max()),
                 "relative_error": float(np.linalg.norm(features - ref) / np.linalg.norm(ref)),
                 "cosine": float(features @ ref / np.linalg.norm(features) / np.linalg.norm(ref)),
                 "reference_max": float(np.abs(ref).max())}
    if conv.check is not None:
        net = tfnet.load_into(conv.build(), tfnet.load_weights(out / "weights.npz"), conv.name)
        check.update(conv.check(src, weights_dir, net))
    if conv.image_fixture:
        TEST_DATA.mkdir(parents=True, exist_ok=True)
        np.savez(TEST_DATA / f"{conv.name}.npz", features=features.astype(np.float32), size=conv.size,
                 mean=conv.mean, std=conv.std)
    digest = sha256(out / "weights.npz")
    lines = [f"# {conv.name}: converted weights", "",
             f"- source: {conv.origin}",
             f"- source sha256: `{conv.sha256}`",
             f"- weights.npz sha256: `{digest}`",
             f"- converted by tools/convert_weights.py ({conv.notes})",
             (f"- input: RGB, (x - {conv.mean}) / {conv.std}; fixture features at {conv.size} px in "
              f"tests/data/tfnet/{conv.name}.npz" if conv.image_fixture else
              f"- test values in tests/data/tfnet/{conv.name}.npz")]
    if check:
        lines.append("- checks of the rebuilt float network (against the TFLite interpreter's own pooled feature "
                     "tensor on the fixture image, or as the check says): "
                     + ", ".join(f"{k} {v:.4g}" for k, v in check.items()))
    (out / "ORIGIN.md").write_text("\n".join(lines) + "\n")
    return {"name": conv.name, "sha256": digest, "bytes": (out / "weights.npz").stat().st_size, **check}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="conversions to run (default: all)")
    parser.add_argument("--weights", type=Path, default=ROOT.parent / "shared" / "weights")
    args = parser.parse_args(argv)
    todo = [c for c in CONVERSIONS if not args.names or c.name in args.names]
    for conv in todo:
        print(json.dumps(convert(conv, args.weights)))


if __name__ == "__main__":
    main()
