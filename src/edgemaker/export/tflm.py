"""The .tflite file run where a microcontroller runs it: the TensorFlow Lite Micro interpreter
(`tflite-micro` on PyPI, reference kernels). Three things only TFLM can say: whether it supports
every operator, the tensor arena it really needs (its own memory planner, not our liveness
estimate), and whether its outputs agree with LiteRT's on real inputs.

TFLM's Python interpreter runs the reference kernels, one inference at a time (EfficientNet-Lite0 at
224 px: about half a second), so the agreement is measured on an evenly spread sample of at most
at most MAX_SAMPLES test files (fewer for heavy networks: MAC_BUDGET), one inference each (a sound:
its middle window, so the top class of one window is compared), and the record says how many. Its C++ code logs to file descriptor 2; that
text is captured (it names an unsupported operator) and never reaches the console.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EdgemakerError
from .model_file import ModelFile

MAX_SAMPLES, MIN_SAMPLES = 25, 8  # test files run through TFLM per int8 file, one inference each ...
# ... as many as 4 G multiply-accumulates allow: TFLM's reference kernels run ~1 G MAC/s here and hold
# the GIL, so Lite0 at 224 px (0.38 G MACs, 0.38 s an inference) gets 10, a microcontroller-size model 25.
MAC_BUDGET = 4e9
AGREEMENT_GOAL = 0.99
INSTALL = "pip install tflite-micro (or `pip install 'edgemaker[tflite]'`)"
_NATIVE = threading.Lock()  # fd 2 is process-wide: one capture at a time


class TFLMUnsupported(EdgemakerError):
    """TFLM cannot run this file (an operator it lacks, or a model it cannot allocate)."""


def available() -> bool:
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _native_log() -> Iterator[list[str]]:
    """Capture what native code writes to fds 1 and 2; the list holds the text afterwards."""
    import sys

    said: list[str] = []
    with _NATIVE, tempfile.TemporaryFile() as native:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(native.fileno(), 1)
        os.dup2(native.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            native.seek(0)
            said.append(native.read().decode(errors="replace"))


def _problem(name: str, log: str) -> str:
    """TFLM's log -> one line naming the operator (or the first thing it said)."""
    ops = sorted(set(re.findall(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'", log)))
    custom = sorted(set(re.findall(r"Didn't find op for custom opcode '([^']+)'", log)))
    if ops or custom:
        listed = ", ".join(ops + [f"custom {c}" for c in custom])
        return (f"{name}: TensorFlow Lite Micro does not support the operator{'s' if len(ops + custom) > 1 else ''} "
                f"{listed}; this file cannot run on a microcontroller as it is (export a model without it, "
                "e.g. another backbone or --formats tflite-int8 from a plain image model)")
    first = next((line.strip() for line in log.splitlines() if line.strip()), "no message")
    return f"{name}: TensorFlow Lite Micro cannot load it ({first})"


def _new(data: bytes, arena: int, name: str):
    """An allocated TFLM interpreter; None when only the arena was too small; TFLMUnsupported otherwise."""
    from tflite_micro import runtime

    with _native_log() as said:
        try:
            return runtime.Interpreter.from_bytes(data, arena_size=arena)
        except (RuntimeError, ValueError):
            pass  # why is in the log, read below once the capture has ended
    log = said[0]
    if re.search(r"Failed to (resize buffer|allocate (tail|head|memory))|Arena size is too small", log):
        return None
    raise TFLMUnsupported(_problem(name, log))


def allocations(interpreter) -> dict[str, int]:
    """TFLM's recording allocator: 'total', 'head' (the planned, reused activations: what the liveness
    estimate predicts) and 'tail' (persistent: quantization parameters, per-operator data), in bytes."""
    with _native_log() as said:
        interpreter.print_allocations()
    return {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", said[0])}


def load(data: bytes, name: str = "model") -> tuple[object, int]:
    """(interpreter, the smallest arena in bytes it allocates in). The arena recorded by TFLM's
    recording allocator is confirmed by allocating in exactly that much; else a bisection finds it."""
    from .flatbuffer import offset_buffers

    if offset_buffers(data):
        raise TFLMUnsupported(f"{name}: its weights are stored after the flatbuffer (offset buffers), which TensorFlow "
                              "Lite Micro misreads; re-export it with edgemaker, which writes them inline")
    size = max(10 * len(data), 1 << 20)
    while (it := _new(data, size, name)) is None:
        if size > 1 << 31:
            raise TFLMUnsupported(f"{name}: TensorFlow Lite Micro could not allocate even a 2 GB arena")
        size *= 2
    total = allocations(it).get("total")
    if (total is not None and total <= size and _new(data, total, name) is not None
            and (total <= 16 or _new(data, total - 16, name) is None)):  # the planner aligns to 16 bytes
        return it, total
    low, high = 0, size  # low fails, high works
    while high - low > 16:
        mid = (low + high) // 2
        if _new(data, mid, name) is None:
            low = mid
        else:
            high = mid
    return it, high


def measure_arena(path: Path) -> int:
    """The tensor arena TFLM needs for this file, in bytes (raises TFLMUnsupported)."""
    return load(Path(path).read_bytes(), Path(path).name)[1]


class _Adapter:
    """TFLM's interpreter behind LiteRT's set_tensor/invoke/get_tensor, for tflite._invoke."""

    def __init__(self, interpreter) -> None:
        self.it = interpreter

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self.it.set_input(value, index)

    def invoke(self) -> None:
        with _native_log() as said:
            try:
                self.it.invoke()
                failed = None
            except RuntimeError as exc:
                failed = exc
        if failed is not None:  # an operator whose kernel lacks this file's types (e.g. an int8 SQRT)
            found = re.search(r"Node ([A-Z0-9_]+) \(number (\d+)\) failed to invoke", said[0])
            what = (f"its kernel for {found.group(1)} (operator {found.group(2)}) cannot run this file's int8 tensors"
                    if found else f"it failed to run it ({(said[0].strip() or str(failed)).splitlines()[-1]})")
            raise TFLMUnsupported(f"TensorFlow Lite Micro cannot run this file: {what}; the file runs in LiteRT "
                                  "(phones, Linux boards) but not on a microcontroller as it is")

    def get_tensor(self, index: int) -> np.ndarray:
        return self.it.get_output(index)


def _details(d: dict, index: int) -> dict:
    q = d["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    return {"index": index, "dtype": d["dtype"], "shape": d["shape"], "quantization": (scale, zero)}


class TFLMModel(ModelFile):
    """An int8 .tflite run by TensorFlow Lite Micro, with the metadata of the same file as LiteRT read it."""

    def __init__(self, like: ModelFile) -> None:
        self.path, self.metadata, self.labels, self.input = like.path, like.metadata, like.labels, like.input
        it, self.arena_bytes = load(self.path.read_bytes(), self.path.name)
        self.allocations = allocations(it)
        self._it = _Adapter(it)
        self._in, self._out = _details(it.get_input_details(0), 0), _details(it.get_output_details(0), 0)
        self._shape = tuple(int(d) for d in self._in["shape"])

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        from .tflite import invoke_model

        return np.stack([invoke_model(self._it, self._in, self._out, x.reshape(self._shape)) for x in batch]).astype(np.float64)

    def _example(self) -> np.ndarray:
        return np.zeros(self._shape, np.float32)


@dataclass
class TFLMCheck:
    status: str  # "ok" | "unsupported" | "skipped"
    message: str | None = None
    samples: int = 0
    of: int = 0  # test files in the split
    agreement_with_litert: float | None = None  # top-1 equal
    max_abs_diff: float | None = None  # largest probability difference
    arena_bytes: int | None = None  # measured by TFLM
    estimate_bytes: int | None = None  # the liveness estimate (device.budget)
    arena_planned_bytes: int | None = None  # TFLM's planned activations (compare with the estimate) ...
    arena_persistent_bytes: int | None = None  # ... and its persistent data (quantization parameters, op data)
    ms_per_inference: float | None = None
    disagreements: list[str] = field(default_factory=list)  # the first 10 names ...
    differing: int | None = None  # ... of this many samples where TFLM and LiteRT differ
    # Of the samples where TFLM and LiteRT differ, how many LiteRT's own reference kernels (the
    # arithmetic TFLM's kernels follow) answer as TFLM does: all of them means the file's int8
    # rounding decides those near-tie samples, not a fault of TFLM.
    reference_kernels_side_with_tflm: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def spread(items: Sequence, n: int) -> list:
    """At most n items, evenly spaced over the sequence (every class of a sorted split is seen)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def sample_count(macs: int | None, max_samples: int = MAX_SAMPLES, min_samples: int = MIN_SAMPLES,
                 mac_budget: float = MAC_BUDGET) -> int:
    """How many inferences the check affords: MAC_BUDGET multiply-accumulates, within [min, max]."""
    if not macs:
        return max_samples
    return int(min(max_samples, max(min_samples, mac_budget // macs)))


def check(litert: ModelFile, paths: Sequence[Path], max_samples: int = MAX_SAMPLES,
          estimate_bytes: int | None = None, macs: int | None = None) -> TFLMCheck:
    """Run the file `litert` holds in TFLM on a spread sample of `paths` (one inference each: an image,
    or a sound's middle window) and compare the top class with LiteRT's on the same input."""
    if not available():
        return TFLMCheck("skipped", f"TensorFlow Lite Micro is not installed: {INSTALL}", of=len(paths),
                         estimate_bytes=estimate_bytes)
    try:
        micro = TFLMModel(litert)
    except TFLMUnsupported as exc:
        return TFLMCheck("unsupported", str(exc), of=len(paths), estimate_bytes=estimate_bytes)
    chosen = spread(list(paths), sample_count(macs, max_samples, min(MIN_SAMPLES, max_samples)))
    same, diff, wrong, seconds, inputs = 0, 0.0, [], 0.0, []
    for path in chosen:
        windows = litert.prepare(path)
        x = windows[len(windows) // 2 :][:1]
        a = litert.predict_proba(x)[0]
        t = time.perf_counter()
        try:
            b = micro.predict_proba(x)[0]
        except TFLMUnsupported as exc:
            return TFLMCheck("unsupported", f"{litert.path.name}: {exc}", of=len(paths), arena_bytes=micro.arena_bytes,
                             estimate_bytes=estimate_bytes)
        seconds += time.perf_counter() - t
        diff = max(diff, float(np.abs(a - b).max()))
        if int(a.argmax()) == int(b.argmax()):
            same += 1
        else:
            wrong.append(Path(path).name)
            inputs.append((x, int(b.argmax())))
    return TFLMCheck("ok", None, len(chosen), len(paths), round(same / len(chosen), 4) if chosen else None,
                     round(diff, 6), micro.arena_bytes, estimate_bytes, micro.allocations.get("head"),
                     micro.allocations.get("tail"), round(1000 * seconds / len(chosen), 1) if chosen else None,
                     wrong[:10], len(wrong), reference_side(litert.path, inputs) if inputs else None)


def reference_side(path: Path, differing: list[tuple[np.ndarray, int]]) -> int | None:
    """How many of `differing` (input, TFLM's top class) LiteRT's reference kernels answer as TFLM.
    Measured on a Lite0 cut after block 6 at 56 px, its last blocks fine-tuned: TFLM differed from
    LiteRT on 3 of 25 images (probabilities within 0.047) and LiteRT's reference kernels differed from
    its optimized ones on 3 of 93: a 1-2 LSB rounding difference early in the network, amplified by a
    1x1 convolution whose output scale is 18x finer than its input's."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from .tflite import invoke_model, quiet_native_logs

    try:
        with quiet_native_logs(show_on_error=False):
            it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        shape = tuple(int(d) for d in inp["shape"])
        return sum(int(invoke_model(it, inp, out, x.reshape(shape)).argmax()) == top for x, top in differing)
    except (ValueError, RuntimeError):  # a kernel the reference resolver lacks: no diagnosis, the check stands
        return None


def warnings(exports: list[dict]) -> list[str]:
    """One line per int8 file that TFLM cannot run or that disagrees with LiteRT."""
    out = []
    for e in exports:
        t = e.get("tflm")
        if not t or e["format"] in ("c-array", "arduino"):  # tflite-int8's bytes: said once
            continue
        if t["status"] == "unsupported":
            out.append(t["message"])
        elif t["status"] == "ok" and t["agreement_with_litert"] is not None and t["agreement_with_litert"] < AGREEMENT_GOAL:
            line = (f"{e['path']}: TensorFlow Lite Micro agrees with LiteRT on only {t['agreement_with_litert']:.1%} "
                    f"of {t['samples']} test files (differs on {', '.join(t['disagreements'][:3])})")
            n, k = t["differing"], t.get("reference_kernels_side_with_tflm")
            if k is not None:
                line += (f"; LiteRT's reference kernels answer as TFLM on {k} of those {n}" + (
                    f": near-tie inputs that the int8 rounding of the kernels decides (probabilities differ by at "
                    f"most {t['max_abs_diff']:.3f}), not a TFLM fault" if k == n else ""))
            out.append(line)
    return out
