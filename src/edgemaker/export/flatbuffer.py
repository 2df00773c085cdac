"""Every constant of a .tflite file inside the flatbuffer, 16-byte aligned, as microcontrollers need.

ai-edge-quantizer writes the weights of any model over 256 kB after the flatbuffer and points at them
with Buffer.offset/size. LiteRT reads that layout; TensorFlow Lite Micro (tflite-micro 2026-10) does
not read it correctly: its outputs departed from LiteRT's from the first convolution whose weights
were stored that way (top class equal on a third of the images). Rewriting those buffers inline
makes one file that both runtimes read the same, and the C array and Arduino library hold it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path

ALIGN = 16  # TFLM reads int32 biases and int8 weights in place: keep every constant 16-byte aligned


def _builder(size: int):
    import flatbuffers

    class Builder(flatbuffers.Builder):
        def CreateNumpyVector(self, x):
            if x.dtype != np.uint8:  # shapes, indices: their own alignment
                return super().CreateNumpyVector(x)
            payload = x.tobytes()
            self.StartVector(1, len(payload), ALIGN)
            self.head = self.head - len(payload)
            self.Bytes[self.head : self.head + len(payload)] = payload
            self.vectorNumElems = len(payload)
            return self.EndVector()

    return Builder(size)


def offset_buffers(data: bytes) -> int:
    """How many buffers of this .tflite are stored outside the flatbuffer (offset/size)."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(data, 0)
    return sum(1 for i in range(model.BuffersLength()) if model.Buffers(i).Offset() > 1)


def inline_buffers(path: Path, short_names: bool = False) -> bool:
    """Rewrite `path` with every offset buffer inline (atomically); False when there was nothing to
    rewrite. `short_names`: every tensor but the graph's inputs and outputs is renamed by its index
    (`t12`): the converter names each after the torch module path of every operator fused into it,
    up to a kilobyte a tensor (on MobileNetV1 0.25 cut after block 11, 69 kB of a 240 kB file) that
    a microcontroller would hold in flash for nothing; TFLite Micro and LiteRT find tensors by index.
    Only for files nothing calibrates on (the quantizer reads the float file's names).
    Bytes after the flatbuffer (an appended metadata zip) are dropped: call before embedding it."""
    from ai_edge_litert import schema_py_generated as fb

    data = Path(path).read_bytes()
    if not offset_buffers(data) and not short_names:
        return False
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    for b in model.buffers:
        if b.offset and b.offset > 1:
            b.data = np.frombuffer(data, np.uint8, count=b.size, offset=b.offset)
            b.offset = b.size = 0
        elif b.data is not None and not isinstance(b.data, np.ndarray):
            b.data = np.asarray(b.data, np.uint8)
    if short_names:
        for graph in model.subgraphs:
            kept = {int(i) for i in [*graph.inputs, *graph.outputs]}
            for i, tensor in enumerate(graph.tensors):
                if i not in kept:
                    tensor.name = f"t{i}"
    builder = _builder(len(data) + (1 << 16))
    builder.Finish(model.Pack(builder), b"TFL3")
    with atomic_path(path, suffix=".tflite") as tmp:
        tmp.write_bytes(bytes(builder.Output()))
    return True
