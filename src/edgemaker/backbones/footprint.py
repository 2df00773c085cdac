"""Flash, RAM and MACs of a full-int8 image classifier, predicted from its torch graph before training.

Why: a budget search must drop candidates that cannot fit before spending time on them. One forward
pass with hooks on a zero input lists the operators in execution order, as the int8 file will run
them (BatchNorm, ReLU and "same" padding fold into the convolution).
- flash: one byte per weight, plus 28 bytes per output channel (an int32 bias; a float scale and an
  int64 zero point for the weight and again for the bias: TFLite's per-channel quantization), the
  head's int8 weights, and per-operator/per-file overheads fitted on real files whose tensors carry
  short names (export/flatbuffer.py; tests/test_footprint_flash.py checks new files against them);
- RAM: at int8 an activation costs one byte per element; at each operator its input and output are
  live, plus any block input held for a residual add; the peak of those sums is the arena a
  liveness planner needs (`planned_bytes`; export/device.py's estimate of the real file is the same),
  plus what TensorFlow Lite Micro keeps for the whole run (per-channel requantization multipliers and
  shifts, per-operator and per-tensor records), so `ram_bytes` predicts the arena TFLM measures;
- MACs: convolutions and dense layers.
The real int8 file is always measured afterwards (export/device.py); this is only a filter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Fitted on 11 real int8 files: Lite0 cut after blocks 3/7/12 at 64 px, MobileNetV1 0.25 and 0.5 cut
# after 3..13 blocks at 96-160 px (13 kB .. 1.2 MB; each within 0.8%) and small_cnn (17.6 kB,
# predicted 8% above: its pooling operators hold no weight tensors).
FILE_OVERHEAD = 2_000  # bytes: flatbuffer header, metadata (labels, recipe), the graph's input ops
PER_OP_BYTES = 350  # bytes per operator: its tensor and operator records, activation quantization
# TFLM's persistent arena, fitted on 5 real files (small_cnn, Lite0 cut after 2/5/6 blocks, the whole
# Lite0; 5 kB .. 184 kB, each within 1%): 8 bytes per output channel (int32 multiplier + shift), about
# 230 bytes per operator (152 of node data + ~2.7 tensors of 27) and a fixed part, which here also
# covers the 5 operators a real file has beyond the traced ones (checked on the same files: the
# prediction is 0 to 0.4 kB above the measured arena, never below).
TFLM_PER_CHANNEL = 8
TFLM_PER_OP = 230
TFLM_FIXED = 1_500


@dataclass
class Footprint:
    flash_bytes: int
    ram_bytes: int  # the arena TFLM needs: planned activations + persistent data
    macs: int
    parameters: int
    operators: int = 0
    planned_bytes: int = 0  # the activations alone (the liveness estimate)

    def to_dict(self) -> dict:
        return asdict(self)


def predict(module, size: int, n_classes: int, feature_dim: int) -> Footprint:
    """`module`: float NCHW (1, 3, size, size) -> (1, feature_dim) features; the classifier adds a
    dense head to `n_classes` and a softmax."""
    ops, _ = trace_ops(module, size)
    return footprint_of(ops, size, n_classes, feature_dim)


def predict_depths(net, size: int, n_classes: int, dims: list[int]) -> list[Footprint]:
    """An EfficientNet cut after each block, from ONE traced forward pass: [depth 1, 2, ...]."""
    from ..backbones.truncated import make_truncated

    ops, ends = trace_ops(make_truncated(net, len(net._blocks)), size)
    return [footprint_of(ops[:end], size, n_classes, dim) for end, dim in zip(ends, dims)]


def predict_blocks(net, size: int, n_classes: int, dims: list[int]) -> list[Footprint]:
    """A network whose blocks carry `footprint_block` (backbones/tfnet.py), cut after each block,
    from one traced forward pass of the whole network: [depth 1, 2, ...]."""
    ops, ends = trace_ops(net, size)
    return [footprint_of(ops[:end], size, n_classes, dim) for end, dim in zip(ends, dims)]


def footprint_of(ops: list[tuple], size, n_classes: int, feature_dim: int,
               input_elements: int | None = None) -> Footprint:
    """`input_elements`: the graph input's size when it is not a (3, size, size) image (a log-mel patch)."""
    image = input_elements or (3 * size * size if isinstance(size, int) else 3 * size[0] * size[1])
    # The graph input (uint8 image) is quantized to int8 once, then the first operator reads it.
    ram = max([image * 2] + [i + o + h for i, o, h, *_ in ops])
    last = ops[-1][1] if ops else image
    ram = max(ram, last + feature_dim)  # the global mean pooling
    if len(ops) > 1 and ops[0][3] == 0 and ops[0][1] > ops[0][0]:
        # A leading PAD (TF "same" padding of a stride-2 stem, backbones/tfnet.py): the converter keeps it
        # between two transposes of the input, and TFLM's planner then holds two input-sized tensors
        # beside the stem's output (measured on MobileNetV1 0.25 files at 96 px: exactly this sum).
        ram = max(ram, 2 * image + ops[1][1])
    head = feature_dim * n_classes
    weights = sum(op[3] for op in ops)
    channels = sum(op[4] for op in ops)
    operators = len(ops) + 4
    flash = weights + head + 28 * (channels + n_classes) + FILE_OVERHEAD + PER_OP_BYTES * operators
    persistent = TFLM_PER_CHANNEL * (channels + n_classes) + TFLM_PER_OP * operators + TFLM_FIXED
    return Footprint(int(flash), int(ram + persistent), int(sum(op[5] for op in ops) + head), int(weights + head),
                     operators, int(ram))


def trace_ops(module, size) -> tuple[list[tuple], list[int]]:
    """Operators in execution order as (input, output, held-for-residual elements, weights, output
    channels, MACs), and the number of operators done at the end of each EfficientNet block.
    `size`: an image side, (H, W), or the whole input shape, batch first (a log-mel patch)."""
    import copy

    import torch

    module = copy.deepcopy(module).to("meta")  # shapes only: no arithmetic, no change to the caller's module
    ops: list[tuple] = []
    ends: list[int] = []
    held = [0]

    def numel(t) -> int:
        return int(t.numel()) if isinstance(t, torch.Tensor) else 0

    def conv_hook(mod, inputs, output):
        k = mod.weight.shape[2] * mod.weight.shape[3] * (mod.in_channels // mod.groups)
        # the converter folds "same" padding, BatchNorm and ReLU into the convolution
        ops.append((numel(inputs[0]), numel(output), held[0], int(mod.weight.numel()), int(mod.out_channels),
                    int(output.numel()) * int(k)))

    def dense_hook(mod, inputs, output):
        ops.append((numel(inputs[0]), numel(output), held[0], int(mod.weight.numel()), int(mod.out_features),
                    int(mod.weight.numel())))

    def pool_hook(mod, inputs, output):
        ops.append((numel(inputs[0]), numel(output), held[0], 0, 0, 0))

    def pad_hook(mod, inputs, output):
        if not ops and numel(output) > numel(inputs[0]):  # later pads fold into their convolution
            ops.append((numel(inputs[0]), numel(output), 0, 0, 0, 0))

    def block_pre(mod, inputs):
        if hasattr(mod, "_block_args"):
            args = mod._block_args
            skip = mod.id_skip and args.stride == 1 and args.input_filters == args.output_filters
        else:  # backbones/tfnet.py's blocks say whether they add their input back
            skip = mod.residual
        held[0] = numel(inputs[0]) if skip else 0

    def block_post(mod, inputs, output):
        if held[0]:
            ops.append((2 * numel(inputs[0]), numel(output), 0, 0, 0, 0))  # the residual ADD
        held[0] = 0
        ends.append(len(ops))

    handles = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(dense_hook))
        elif isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            handles.append(m.register_forward_hook(pool_hook))
        elif getattr(m, "footprint_pad", False):
            handles.append(m.register_forward_hook(pad_hook))
        elif hasattr(m, "_block_args") or getattr(m, "footprint_block", False):
            handles.append(m.register_forward_pre_hook(block_pre))
            handles.append(m.register_forward_hook(block_post))
    try:
        with torch.no_grad():
            shape = (1, 3, size, size) if isinstance(size, int) else (1, 3, *size) if len(size) == 2 else size
            module.eval()(torch.zeros(*shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return ops, ends
