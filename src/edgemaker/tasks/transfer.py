"""--base-model FILE --retrain-last N: the user's earlier model as the starting point,
so a model made elsewhere is adapted to new classes instead of trained again.

The file (an edgemaker model_fp32.onnx, any image-classification ONNX, or TorchScript) becomes a
torch graph; its weight layers (convolutions and dense layers, in graph order) before the last N are
frozen, the last N are reset and trained on the new data (the last one with the new class count),
BatchNorm statistics stay frozen. The trunk (everything before the last dense layer) is saved as an
ONNX file and described as a file-weights spec, so evaluation and every export work as for any run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..backbones import base_model
from ..backbones.spec import BackboneSpec, ImageInput, WeightsSource
from ..data.validate import Sample
from ..errors import EdgemakerError
from ..progress import Progress
from .options import INPUT_SCALINGS, ClassifierOptions
from .scratch import fit_network, image_sets, write_trained

_PREFIX_OPS = ("Transpose", "Cast", "Sub", "Mul", "Div")  # edgemaker's uint8 NHWC -> normalised NCHW prefix
_TAIL_OPS = ("Softmax", "LogSoftmax", "Identity", "Flatten", "Reshape", "Dropout")


@dataclasses.dataclass
class BaseModel:
    """The base model as a float NCHW ONNX graph ending in class scores, and its input recipe."""

    graph: object  # onnx ModelProto
    image: ImageInput
    channels: int
    classes: int | None  # from edgemaker metadata, checked against the last layer
    source: str


def _is_onnx(path: Path) -> bool:
    import zipfile

    return not zipfile.is_zipfile(path)  # TorchScript archives are zip files; ONNX is protobuf


def _recipe(options: ClassifierOptions, source: str, size: int | None, channels: int | None) -> ImageInput:
    """The input recipe of a file edgemaker did not make, from its shape and the options."""
    size = size or options.model.input_size  # a fixed size in the graph wins
    missing = [flag for flag, value in (("--input-size", size), ("--input-scaling", options.model.input_scaling))
               if value is None]
    if missing:
        raise EdgemakerError(f"{source}: no edgemaker metadata, so the input recipe is missing "
                             f"{' and '.join(missing)} (e.g. --input-size 224 --input-scaling 0..1)")
    mean, std = INPUT_SCALINGS[options.model.input_scaling]
    return ImageInput(size=size, mean=mean, std=std, crop_padding=0)


def _static(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def load_base(path: Path, options: ClassifierOptions) -> BaseModel:
    """Read FILE into a float-NCHW ONNX graph plus its input recipe; one-line errors otherwise."""
    import onnx

    source = str(path)
    if not path.is_file():
        raise EdgemakerError(f"{path}: --base-model file not found")
    if not _is_onnx(path):
        return _from_torchscript(path, options)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for a file that is not ONNX
        raise EdgemakerError(f"{path}: not an ONNX or TorchScript model ({exc.__class__.__name__})") from None
    if len(model.graph.input) != 1:
        raise EdgemakerError(f"{path}: the base model must take one input, it takes {len(model.graph.input)}")
    props = {p.key: p.value for p in model.metadata_props}
    if "edgemaker" in props:
        meta = json.loads(props["edgemaker"])
        inp = meta.get("input", {})
        if inp.get("kind") != "image":
            raise EdgemakerError(f"{path}: an edgemaker {inp.get('kind', 'unknown')} model; --base-model takes image models")
        if meta.get("quantization", "none") != "none":
            raise EdgemakerError(f"{path}: a quantized ({meta['quantization']}) file cannot be retrained; "
                                 f"use the run's model_fp32.onnx")
        image = ImageInput(size=int(inp["size"]), mean=tuple(inp["mean"]), std=tuple(inp["std"]),
                           crop_padding=int(inp.get("crop_padding", 0)))
        return BaseModel(_strip_prefix(model, source), image, 3, len(meta.get("labels", [])) or None, source)
    shape = model.graph.input[0].type.tensor_type.shape.dim
    if len(shape) != 4:
        raise EdgemakerError(f"{path}: the base model's input must be an image batch (N, C, H, W), "
                             f"its input has {len(shape)} dimensions")
    channels, height = _static(shape[1]), _static(shape[2])
    if channels not in (1, 3):
        raise EdgemakerError(f"{path}: cannot read the input channels (NCHW dimension 1 is "
                             f"{channels or 'dynamic'}); export the model with a fixed 1 or 3 channel input")
    return BaseModel(model, _recipe(options, source, height, channels), channels, None, source)


def _from_torchscript(path: Path, options: ClassifierOptions) -> BaseModel:
    """TorchScript -> ONNX (the same path as any ONNX file). torch.jit.load runs TorchScript code,
    never unpickles Python objects; the recipe comes from the options."""
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises several types for bad archives
        raise EdgemakerError(f"{path}: not a loadable TorchScript model ({str(exc).splitlines()[0][:120]})") from None
    image = _recipe(options, str(path), None, None)
    errors = []
    for channels in (3, 1):  # the channel count a TorchScript module takes is not recorded: try both
        buf = io.BytesIO()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (torch.zeros(1, channels, image.size, image.size),), buf,
                                  input_names=["x"], output_names=["scores"], dynamic_axes={"x": {0: "n"}, "scores": {0: "n"}},
                                  opset_version=17, dynamo=False)
        except Exception as exc:  # noqa: BLE001  (a wrong channel count fails inside the model)
            errors.append(str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__)
            continue
        import onnx

        return BaseModel(onnx.load_from_string(buf.getvalue()), image, channels, None, str(path))
    raise EdgemakerError(f"{path}: the TorchScript model cannot be run on {image.size}x{image.size} images "
                         f"with 3 or 1 channels ({errors[0]})")


def _strip_prefix(model, source: str):
    """Cut edgemaker's uint8 NHWC -> (x - mean) / std prefix: the rest takes normalised float NCHW."""
    import onnx

    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensor = model.graph.input[0].name
    for _ in range(len(_PREFIX_OPS)):
        nxt = consumers.get(tensor, [])
        if len(nxt) != 1 or nxt[0].op_type not in _PREFIX_OPS:
            break
        tensor = nxt[0].output[0]
    if tensor == model.graph.input[0].name:
        raise EdgemakerError(f"{source}: edgemaker metadata but no input normalisation found; re-export the run")
    model = onnx.shape_inference.infer_shapes(model)
    return onnx.utils.Extractor(model).extract_model([tensor], [o.name for o in model.graph.output])


def weight_layers(gm) -> list:
    """call_module nodes of convolutions and dense layers, in graph order."""
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
    modules = dict(gm.named_modules())
    return [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], kinds)]


def split_trunk(gm, source: str):
    """Make `gm` end at the input of its last dense layer; returns (gm, that layer, class count)."""
    from torch import nn

    layers = weight_layers(gm)
    modules = dict(gm.named_modules())
    if not layers or not isinstance(modules[layers[-1].target], nn.Linear):
        last = modules[layers[-1].target].__class__.__name__ if layers else "none"
        raise EdgemakerError(f"{source}: cannot read the class count: the last weight layer is {last}, "
                             "not a dense (Gemm) layer giving class scores")
    head = layers[-1]
    node, seen = head, 0
    while True:  # what follows the last dense layer may only normalise or reshape its scores
        users = list(node.users)
        if len(users) == 1 and users[0].op == "output":
            break
        ops = [modules[u.target].__class__.__name__ if u.op == "call_module" else str(u.target) for u in users]
        if len(users) != 1 or not any(k.lower() in ops[0].lower() for k in _TAIL_OPS) or seen > 4:
            raise EdgemakerError(f"{source}: cannot read the class count: the last dense layer is followed by "
                                 f"{', '.join(ops) or 'nothing'}, not by the graph output")
        node, seen = users[0], seen + 1
    out = next(n for n in gm.graph.nodes if n.op == "output")
    out.args = (head.args[0],)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm, modules[head.target], modules[head.target].out_features


def train_from_base(spec: BackboneSpec, train: Sequence[Sample], validation: Sequence[Sample],
                    options: ClassifierOptions, progress: Progress) -> tuple[BackboneSpec, dict]:
    import torch

    t0 = time.perf_counter()
    path = options.model.base_model
    if path is None:
        raise EdgemakerError("backbone base_model needs --base-model FILE (an ONNX or TorchScript classifier)")
    path = Path(path).expanduser()
    base = load_base(path, options)
    gm = base_model.convert(base.graph, base.source)
    gm, old_head, base_classes = split_trunk(gm, base.source)
    if base.classes is not None and base.classes != base_classes:
        raise EdgemakerError(f"{path}: cannot read the class count: its labels say {base.classes}, "
                             f"its last dense layer gives {base_classes}")
    n = options.model.retrain_last
    layers = weight_layers(gm)
    if n > len(layers) + 1:
        raise EdgemakerError(f"--retrain-last {n}: {path.name} has only {len(layers) + 1} weight layers "
                             f"(convolutions and dense layers); choose 1..{len(layers) + 1}")
    modules = dict(gm.named_modules())
    reset = [modules[node.target] for node in layers[len(layers) - (n - 1):]] if n > 1 else []
    trunk = base_model.channel_adapter(gm, base.channels)
    torch.manual_seed(options.hparams.seed)
    for p in trunk.parameters():
        p.requires_grad_(False)
    for layer in reset:
        layer.reset_parameters()
        for p in layer.parameters():
            p.requires_grad_(True)
    spec = dataclasses.replace(spec, image=base.image)
    x_train, x_val, classes = image_sets(spec, train, validation, options, progress)
    head = torch.nn.Linear(old_head.in_features, len(classes))
    dropout = torch.nn.Dropout(options.hparams.dropout)
    model = torch.nn.Sequential(trunk, dropout, head)

    def train_mode() -> None:  # frozen layers and BatchNorm statistics stay as they are
        model.eval()
        dropout.train()

    trainable = [p for p in model.parameters() if p.requires_grad]
    history = fit_network(model, trainable, x_train, x_val, options, progress, "base_model", train_mode,
                          small=base.image.size <= 64)
    path_w, sha = _save_trunk(trunk, base.image, options)
    trained = dataclasses.replace(
        spec, weights=WeightsSource("file", str(path_w), sha), feature_dim=old_head.in_features,
        parameters=sum(p.numel() for p in trunk.parameters()),
        description=f"{path.name}, last {n} layers retrained")
    best = max(history, key=lambda r: (r.val_accuracy or 0.0, -(r.val_loss or 0.0))) if x_val.samples else history[-1]
    summary = {"trained": "from base model", "base_model": str(path), "retrain_last": n,
               "weight_layers": len(layers) + 1, "base_classes": base_classes, "input_size": base.image.size,
               "epochs_run": len(history), "best_epoch": best.epoch, "val_accuracy": best.val_accuracy,
               "train_s": round(time.perf_counter() - t0, 3)}
    return trained, summary


def _save_trunk(trunk, image: ImageInput, options: ClassifierOptions) -> tuple[Path, str]:
    """The trained trunk as ONNX (float NCHW normalised RGB -> features), content-addressed."""
    import torch

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(trunk.eval(), (torch.zeros(1, 3, image.size, image.size),), buf, input_names=["x"],
                          output_names=["features"], dynamic_axes={"x": {0: "n"}, "features": {0: "n"}},
                          opset_version=17, dynamo=False)
    data = _fold_constants(buf.getvalue())
    sha = hashlib.sha256(data).hexdigest()
    return write_trained(data, f"{base_model.NAME}-{sha[:16]}.onnx", options), sha


def _fold_constants(model: bytes) -> bytes:
    """ONNX Runtime's basic (standard-operator) optimisations, constant folding first: padding computed
    from constants (ConstantOfShape/Concat/Slice chains, as in EfficientNet's "same" padding)
    becomes a constant Pad, which the TFLite converter's torch.export can trace."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "folded.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(target)
        so.log_severity_level = 3
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        return target.read_bytes()
