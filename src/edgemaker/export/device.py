"""What a microcontroller needs to know about a .tflite file: are all ops integer, how much flash
and RAM it takes, how many multiply-accumulates an inference costs; and the C array for TFLite Micro.

RAM is estimated from a liveness analysis of the graph in execution order: at each operator, every
activation tensor that has been produced and is still needed later (or is the operator's own input
or output) is live; the peak sum is the arena estimate. TFLite Micro's planner placed exactly this
much for EfficientNet-Lite0 (96 and 224 px) and adds persistent data (quantization parameters, operator
data: ~180 kB for Lite0), so budgets use TFLM's measured arena when tflite-micro is installed (tflm.py).
Constant tensors live in flash, not in the arena.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..errors import EdgemakerError


def _graph(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # execution order
    return it, tensors, ops


def _nbytes(t: dict) -> int:
    return int(np.prod([max(int(d), 1) for d in t["shape"]])) * np.dtype(t["dtype"]).itemsize


def float_ops(path: Path) -> list[str]:
    """Operators that read or write float tensors, as 'INDEX:OP_NAME' (empty for a full-int8 model)."""
    _, tensors, ops = _graph(path)
    out = []
    for op in ops:
        ios = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(np.issubdtype(tensors[i]["dtype"], np.floating) for i in ios):
            out.append(f"{op['index']}:{op['op_name']}")
    return out


@dataclass
class Budget:
    flash_bytes: int
    peak_ram_bytes: int  # the liveness estimate
    macs: int
    operators: int
    arena_bytes: int | None = None  # measured by TensorFlow Lite Micro (None: not measured)

    @property
    def ram_bytes(self) -> int:
        """What budgets use: TFLM's measured arena when there is one, else the estimate."""
        return self.arena_bytes if self.arena_bytes is not None else self.peak_ram_bytes

    @property
    def ram_source(self) -> str:
        return "measured by TFLite Micro" if self.arena_bytes is not None else "estimated"

    def to_dict(self) -> dict:
        return {**asdict(self), "ram_bytes": self.ram_bytes, "ram_source": self.ram_source}


def budget(path: Path, measure: bool = True, arena_bytes: int | None = None) -> Budget:
    """Flash, RAM and MACs of a .tflite file. RAM: `arena_bytes` when given, else the arena TFLM
    needs when `measure` and tflite-micro is installed and runs the file, else only the estimate."""
    if arena_bytes is None and measure:
        arena_bytes = _measured_arena(path)
    it, tensors, ops = _graph(path)
    produced = {o for op in ops for o in op["outputs"] if o >= 0}
    graph_inputs = {d["index"] for d in it.get_input_details()}
    graph_outputs = {d["index"] for d in it.get_output_details()}
    activations = produced | graph_inputs
    last_use: dict[int, int] = {}
    first_def: dict[int, int] = {i: -1 for i in graph_inputs}
    for k, op in enumerate(ops):
        for i in op["inputs"]:
            if i in activations:
                last_use[i] = k
        for o in op["outputs"]:
            if o >= 0:
                first_def.setdefault(o, k)
    for o in graph_outputs:
        last_use[o] = len(ops)
    peak = 0
    for k in range(len(ops)):
        live = [t for t in activations if first_def.get(t, len(ops)) <= k <= last_use.get(t, -1)]
        peak = max(peak, sum(_nbytes(tensors[t]) for t in live))
    return Budget(flash_bytes=path.stat().st_size, peak_ram_bytes=peak, macs=sum(_macs(op, tensors) for op in ops),
                  operators=len(ops), arena_bytes=arena_bytes)


def _measured_arena(path: Path) -> int | None:
    from . import tflm

    if not tflm.available():
        return None
    try:
        return tflm.measure_arena(path)
    except tflm.TFLMUnsupported:
        return None


def _macs(op: dict, tensors: dict) -> int:
    name = op["op_name"]
    ins = [tensors[i]["shape"] for i in op["inputs"] if i >= 0]
    outs = [tensors[o]["shape"] for o in op["outputs"] if o >= 0]
    if not outs or len(ins) < 2:
        return 0
    out = outs[0]
    if name == "CONV_2D":  # filter (Co, kh, kw, Ci)
        co, kh, kw, ci = ins[1]
        return int(np.prod(out[:-1])) * int(co) * int(kh) * int(kw) * int(ci)
    if name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, C)
        return int(np.prod(out)) * int(ins[1][1]) * int(ins[1][2])
    if name == "FULLY_CONNECTED":  # weights (out, in)
        return int(np.prod(out)) * int(ins[1][-1])
    if name == "BATCH_MATMUL":
        return int(np.prod(out)) * int(ins[0][-1])
    return 0


def _human(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def parse_size(text: str) -> int:
    """'512K', '1.5M', '2MB', '300000' -> bytes (K = 1000; KiB/MiB = 1024-based)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(k|kb|kib|m|mb|mib|g|gb|gib|b)?\s*", text.lower())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512K or 1.5M)")
    unit = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2,
            "g": 1e9, "gb": 1e9, "gib": 1024**3}[m.group(2) or ""]
    return int(float(m.group(1)) * unit)


def check_budget(name: str, b: Budget, max_flash: int | None, max_ram: int | None) -> str | None:
    """None when it fits; else one line with the numbers and what to try."""
    over = []
    if max_flash is not None and b.flash_bytes > max_flash:
        over.append(f"flash {_human(b.flash_bytes)} > {_human(max_flash)}")
    if max_ram is not None and b.ram_bytes > max_ram:
        over.append(f"RAM {_human(b.ram_bytes)} ({b.ram_source}) > {_human(max_ram)}")
    if not over:
        return None
    return (f"{name} does not fit the device budget ({'; '.join(over)}): try a smaller input size "
            "(--input-size 128 or 96, RAM falls with the square of it) or a smaller backbone")


def write_c_array(tflite: Path, out_dir: Path, metadata: dict, name: str = "model_data") -> tuple[Path, Path]:
    """model_data.h / model_data.cc for TFLite Micro: a 16-byte aligned copy of the .tflite bytes,
    its length, the labels, and the input's scale and zero point. Refuses float operators."""
    floats = float_ops(tflite)
    if floats:
        raise EdgemakerError(f"{tflite}: not a full-integer model, float operators: {', '.join(floats[:8])}"
                             f"{' ...' if len(floats) > 8 else ''}; export tflite-int8 for microcontrollers")
    data = tflite.read_bytes()
    labels = metadata["labels"]
    inp = metadata["input"]
    guard = f"EDGEMAKER_{name.upper()}_H_"

    def c_string(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode("ascii") + '"'

    header = "\n".join([
        f"// Generated by edgemaker from {tflite.name}: a full-int8 classifier for TensorFlow Lite Micro.",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <cstddef>", "#include <cstdint>", "",
        f"extern const unsigned char g_{name}[];", f"extern const unsigned int g_{name}_len;",
        f"constexpr int k{_camel(name)}NumLabels = {len(labels)};",
        f"extern const char* const g_{name}_labels[k{_camel(name)}NumLabels];",
        f"constexpr float k{_camel(name)}InputScale = {inp.get('scale', 0.0)!r}f;",
        f"constexpr int k{_camel(name)}InputZeroPoint = {inp.get('zero_point', 0)};",
        "", f"#endif  // {guard}", ""])
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    source = "\n".join([
        f'#include "{name}.h"', "",
        f"alignas(16) const unsigned char g_{name}[] = {{", *(f"  {r}," for r in rows), "};",
        f"const unsigned int g_{name}_len = {len(data)};",
        f"const char* const g_{name}_labels[k{_camel(name)}NumLabels] = {{",
        *(f"  {c_string(label)}," for label in labels), "};", ""])
    h, cc = out_dir / f"{name}.h", out_dir / f"{name}.cc"
    write_text(h, header)
    write_text(cc, source)
    return h, cc


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
