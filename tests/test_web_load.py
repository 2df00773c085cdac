"""A short load on `serve --model` (a real uvicorn server in a subprocess, on loopback): every request
answered, memory flat once warm. The full run (32 clients x 60 s, images and a sound mix, batched
and not) is bench/serve_load.py, called by `make bench`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from serve_load import Server, media, run_load  # noqa: E402
from web_models import trained_model  # noqa: E402


def test_eight_clients_for_five_seconds_get_every_answer_and_memory_stays_flat():
    images, _ = media()
    server = Server(trained_model("image"), batch_ms=0)
    try:
        out = run_load([(f"{server.url}/api/v1/predict", images, 8)], 5.0, [server])
    finally:
        server.stop()
    assert out["errors"] == 0 and out["requests"] >= 8, out
    warm, end = out["rss_warm_mb"][server.url], out["rss_end_mb"][server.url]
    assert end - warm < 64, out  # MB; a leak per request would show within a few hundred requests


class _Linear:
    """A deterministic stand-in for an exported model: rows -> softmax of a fixed linear map."""

    calls: list[int]

    def __init__(self) -> None:
        import numpy as np

        self.w, self.calls = np.random.default_rng(0).normal(size=(6, 3)), []

    def predict_proba(self, batch):
        import numpy as np

        self.calls.append(len(batch))
        if not np.isfinite(batch).all():
            raise ValueError("not finite")
        z = batch.reshape(len(batch), -1) @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_the_micro_batcher_gives_each_request_its_own_answer():
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from edgemaker.web.batching import MicroBatcher

    model = _Linear()
    batcher = MicroBatcher(model, window_s=0.02, max_rows=8, runners=1)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 6)) for _ in range(24)]  # 1-3 windows a file

    def one(x):
        batcher.enter()
        try:
            return batcher.predict(x)
        finally:
            batcher.leave()

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(one, inputs))
    for x, p in zip(inputs, got):
        assert np.allclose(p, model.predict_proba(x).mean(axis=0))
    assert max(model.calls) > 3  # requests did share calls
    with pytest.raises(ValueError, match="not finite"):
        one(np.full((2, 6), np.nan))
