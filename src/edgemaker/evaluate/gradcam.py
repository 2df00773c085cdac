"""Grad-CAM for the report: where the float model looked when it got a test image wrong.

The backbone's torch module (the one its ONNX graph is exported from, fine-tuned or trained
weights included) runs with the run's linear head on top; the gradient of the predicted class's
logit at the last convolution that executes weights that convolution's channels (Selvaraju et al.,
2017). Only misclassified images are explained, in small batches, so it costs seconds. A shortcut
shows up as heat on something that is not the object (a corner mark, a background, a watermark).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_LIMIT = 12
OVERLAY_SIDE = 160


@dataclass
class Explanations:
    """Heat maps of misclassified test images (`items`), or why there are none (`skipped`)."""

    method: str = "grad-cam"
    layer: str | None = None
    target: str = "predicted class"
    items: list[dict] = field(default_factory=list)  # test index, path, label, predicted, mass, overlay (data URI)
    skipped: str | None = None
    total_wrong: int = 0
    seconds: float = 0.0

    def overlays(self) -> dict[int, str]:
        return {item["index"]: item["overlay"] for item in self.items}

    def to_dict(self) -> dict:
        """For metrics.json: everything but the pictures (they live in report.html)."""
        return {"method": self.method, "layer": self.layer, "target": self.target, "skipped": self.skipped,
                "explained": len(self.items), "misclassified": self.total_wrong, "seconds": round(self.seconds, 3),
                "images": [{k: v for k, v in item.items() if k != "overlay"} for item in self.items]}


def gradcam(module, coef: np.ndarray, intercept: np.ndarray, images: np.ndarray, targets: Sequence[int],
            batch_size: int = 8) -> tuple[np.ndarray, str]:
    """Grad-CAM maps in [0, 1], (N, S, S) for uint8 (N, S, S, 3) `images`, and the layer's name.

    `module`: uint8 NHWC images -> (N, D) features; the class score is `features @ coef.T + intercept`.
    The layer is the last Conv2d that runs: every convolution's output is cut from the graph as it
    leaves (so the frozen prefix keeps no graph), and the last one cut is where the gradient starts."""
    import torch
    import torch.nn.functional as F

    module = module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    w = torch.from_numpy(np.asarray(coef, np.float32))
    b = torch.from_numpy(np.asarray(intercept, np.float32))
    size = images.shape[1]
    seen: dict = {}

    def cut(name: str):
        def hook(_mod, _inp, out):
            out = out.detach().requires_grad_(True)
            seen["a"], seen["name"] = out, name
            return out
        return hook

    handles = [m.register_forward_hook(cut(n)) for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not handles:
        raise ValueError("the backbone has no 2-D convolution")
    maps = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a dozen images: a second thread mostly spins (4x slower on a busy 2-core machine)
    try:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            idx = torch.as_tensor(list(targets[start:start + batch_size]), dtype=torch.long)
            with torch.enable_grad():
                logits = module(x) @ w.T + b
                score = logits.gather(1, idx[:, None]).sum()
                act = seen["a"]
                (grad,) = torch.autograd.grad(score, act)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * act.detach()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)
            maps.append((cam / peak[:, None, None]).numpy())
    finally:
        torch.set_num_threads(threads)
        for h in handles:
            h.remove()
    return np.concatenate(maps) if maps else np.zeros((0, size, size), np.float32), seen.get("name", "")


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 RGB, dark blue -> cyan -> yellow -> red (a jet-like ramp, no matplotlib)."""
    h = np.clip(heat, 0, 1)[..., None]
    stops = np.array([[0, 0, 128], [0, 160, 255], [255, 230, 0], [220, 20, 0]], np.float32)
    pos = h * (len(stops) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
    t = pos - lo
    rgb = stops[lo[..., 0]] * (1 - t) + stops[lo[..., 0] + 1] * t
    return rgb.astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, side: int = OVERLAY_SIDE) -> str:
    """The model's input with its heat map blended on top, as a small JPEG data URI."""
    from PIL import Image

    alpha = 0.25 + 0.45 * np.clip(heat, 0, 1)[..., None]  # hot regions show more colour
    mixed = image.astype(np.float32) * (1 - alpha) + heat_colours(heat).astype(np.float32) * alpha
    im = Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def quadrant_mass(heat: np.ndarray) -> dict[str, float]:
    """Share of the heat in each quarter of the image (recorded, and what the tests check)."""
    s = heat.shape[0] // 2
    parts = {"top_left": heat[:s, :s], "top_right": heat[:s, s:], "bottom_left": heat[s:, :s],
             "bottom_right": heat[s:, s:]}
    total = float(heat.sum()) or 1.0
    return {k: round(float(v.sum()) / total, 4) for k, v in parts.items()}


def torch_module(spec):
    """The float torch module of an image backbone, normalising uint8 NHWC input like its ONNX graph."""
    from ..backbones.registry import get_builder
    from ..backbones.runtime import with_uint8_input
    from ..backbones.weights import resolve_weights

    return with_uint8_input(get_builder(spec.name)(spec, resolve_weights(spec.weights)), spec.image)


def explain_misclassified(clf, samples, evaluation, limit: int = DEFAULT_LIMIT, batch_size: int = 8) -> Explanations:
    """Grad-CAM of the predicted class for up to `limit` misclassified images, most confident first."""
    from ..data.images import load_for_model

    start = time.perf_counter()
    wrong = [int(i) for i in np.flatnonzero(evaluation.y_pred != evaluation.y_true)]
    out = Explanations(total_wrong=len(wrong))
    spec = clf.spec
    if spec.image is None:
        out.skipped = "sounds are not explained (Grad-CAM here works on images)"
    elif not wrong:
        out.skipped = "no misclassified test image"
    else:
        wrong.sort(key=lambda i: -float(evaluation.probabilities[i].max()))
        chosen = wrong[:limit]
        try:
            module = torch_module(spec)
        except Exception as exc:  # noqa: BLE001 - any backbone without a usable torch module is skipped
            out.skipped = f"backbone {spec.name} has no torch module to explain ({type(exc).__name__}: {exc})"
        else:
            images = np.stack([load_for_model(samples[i].path.read_bytes(), spec.image) for i in chosen])
            targets = [int(evaluation.y_pred[i]) for i in chosen]
            try:
                maps, out.layer = gradcam(module, clf.head.coef_, clf.head.intercept_, images, targets, batch_size)
            except ValueError as exc:
                out.skipped = f"backbone {spec.name}: {exc}"
                maps = []
            for i, image, heat in zip(chosen, images, maps):
                out.items.append({"index": i, "path": str(samples[i].path.name), "label": samples[i].label,
                                  "predicted": evaluation.classes[evaluation.y_pred[i]],
                                  "confidence": round(float(evaluation.probabilities[i].max()), 4),
                                  "mass": quadrant_mass(heat), "overlay": overlay(image, heat)})
    out.seconds = time.perf_counter() - start
    return out
