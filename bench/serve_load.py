"""`edgemaker serve --model` under load, on loopback: real uvicorn servers in subprocesses, models
trained here from generated data (3 image patterns, 3 tones; int8 ONNX, what the web app serves).

Scenarios, each CLIENTS concurrent clients (an asyncio httpx client each, one request after another)
for SECONDS seconds:
  images  every client posts PNG photos to the image server;
  mix     a quarter of the clients post 1-2 s WAV clips to a sound server, the rest photos;
each run twice: with the micro-batcher (EDGEMAKER_SERVE_BATCH_MS=5: concurrent requests share one
ONNX Runtime call) and without (0). Recorded: requests/s, p50/p99 latency, errors (any non-200 or
transport error), and each server's RSS before the load, after a 5 s warm-up, and at the end.

    python bench/serve_load.py [--clients 32] [--seconds 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
WARMUP_S = 5.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """`python -m edgemaker serve --model FILE` on a free loopback port."""

    def __init__(self, model: Path, batch_ms: float) -> None:
        env = {**os.environ, "EDGEMAKER_SERVE_BATCH_MS": str(batch_ms),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgemaker", "serve", "--model", str(model), "--port", "0",
                                      "--no-browser"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=env)
        lines = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            lines.append(line)
            found = re.search(r"open (http://\S+?)/?\s", line)
            if found:
                self.url = found.group(1).rstrip("/")
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("serve did not start: " + "".join(lines))

    @property
    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _client(http, url: str, files: list[tuple[str, bytes, str]], stop_at: float, seed: int,
                  log: list) -> None:
    rng = np.random.default_rng(seed)
    while time.monotonic() < stop_at:
        name, data, ctype = files[rng.integers(len(files))]
        t = time.monotonic()
        try:
            r = await http.post(url, files={"file": (name, data, ctype)})
            ok = r.status_code == 200 and "probabilities" in r.json()
        except Exception:  # noqa: BLE001 - a transport error is an error
            ok = False
        log.append((t, time.monotonic() - t, ok, url))


def run_load(targets: list[tuple[str, list, int]], seconds: float, servers: list[Server]) -> dict:
    """targets: (predict URL, files, clients). Returns the numbers of the whole run."""
    import httpx

    log: list = []
    rss_start = {s.url: s.rss_mb for s in servers}
    warm: dict = {}

    async def main():
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            t0 = time.monotonic()
            stop_at = t0 + seconds
            tasks = [asyncio.create_task(_client(http, url, files, stop_at, 1000 * i + j, log))
                     for i, (url, files, n) in enumerate(targets) for j in range(n)]
            await asyncio.sleep(min(WARMUP_S, seconds / 2))
            warm.update({s.url: s.rss_mb for s in servers})
            await asyncio.gather(*tasks)
            return time.monotonic() - t0

    elapsed = asyncio.run(main())
    latencies = np.array([d for _, d, ok, _ in log if ok]) * 1000
    out = {"requests": len(log), "rps": len(latencies) / elapsed, "errors": sum(not ok for *_, ok, _ in log),
           "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
           "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
           "seconds": elapsed,
           "rss_start_mb": {u: round(v, 1) for u, v in rss_start.items()},
           "rss_warm_mb": {u: round(v, 1) for u, v in warm.items()},
           "rss_end_mb": {s.url: round(s.rss_mb, 1) for s in servers}}
    for url, *_ in targets:
        mine = np.array([d for _, d, ok, u in log if ok and u == url]) * 1000
        out.setdefault("by_target", {})[url] = {"requests": len(mine), "rps": len(mine) / elapsed,
                                                "p99_ms": float(np.percentile(mine, 99)) if len(mine) else float("nan")}
    return out


def media() -> tuple[list, list]:
    from web_models import IMAGE_CLASSES, TONES, png, wav

    images = [(f"{k}_{s}.png", png(k, 500 + s, size=160), "image/png") for k in IMAGE_CLASSES for s in range(3)]
    sounds = [(f"tone{int(f)}_{s}.wav", wav(f, 600 + s, seconds=1.0 + s / 2), "audio/wav") for f in TONES for s in range(3)]
    return images, sounds


def measure(clients: int = 32, seconds: float = 60.0) -> dict:
    from web_models import trained_model

    image_model, sound_model = trained_model("image", "onnx-int8"), trained_model("audio", "onnx-int8")
    images, sounds = media()
    result: dict = {"serve_clients": clients, "serve_seconds": seconds, "serve_client": "httpx.AsyncClient",
                    "serve_models": [image_model.name, sound_model.name]}
    for batch_ms in (0, 5):
        tag = "batched" if batch_ms else "unbatched"
        servers = [Server(image_model, batch_ms), Server(sound_model, batch_ms)]
        try:
            img_url, snd_url = (f"{s.url}/api/v1/predict" for s in servers)
            result[f"images_{tag}"] = run_load([(img_url, images, clients)], seconds, servers[:1])
            mix_sound = max(clients // 4, 1)
            result[f"mix_{tag}"] = run_load([(img_url, images, clients - mix_sound), (snd_url, sounds, mix_sound)],
                                            seconds, servers)
        finally:
            for s in servers:
                s.stop()
        print(f"  {tag:<10} images {result[f'images_{tag}']['rps']:.1f} req/s p99 "
              f"{result[f'images_{tag}']['p99_ms']:.0f} ms; mix {result[f'mix_{tag}']['rps']:.1f} req/s p99 "
              f"{result[f'mix_{tag}']['p99_ms']:.0f} ms", flush=True)
    from edgemaker.web.app import WebConfig

    default = "batched" if WebConfig.batch_window_ms > 0 else "unbatched"
    main = result[f"images_{default}"]
    img = next(iter(main["rss_start_mb"]))
    result.update({
        "serve_batching_default": default,
        "serve_rps": main["rps"], "serve_p50_ms": main["p50_ms"], "serve_p99_ms": main["p99_ms"],
        "serve_errors": sum(result[f"{k}_{t}"]["errors"] for k in ("images", "mix") for t in ("batched", "unbatched")),
        "serve_rss_start_mb": main["rss_start_mb"][img], "serve_rss_warm_mb": main["rss_warm_mb"][img],
        "serve_rss_end_mb": main["rss_end_mb"][img],
        "serve_mix_rps": result[f"mix_{default}"]["rps"], "serve_mix_p99_ms": result[f"mix_{default}"]["p99_ms"],
        "serve_batched_vs_unbatched_rps": result["images_batched"]["rps"] / result["images_unbatched"]["rps"],
    })
    return result


def report(r: dict) -> None:
    print(f"serve --model under load ({r['serve_clients']} clients x {r['serve_seconds']:.0f} s, {r['serve_client']}; "
          f"default: {r['serve_batching_default']}):")
    for scenario in ("images", "mix"):
        for tag in ("unbatched", "batched"):
            x = r[f"{scenario}_{tag}"]
            rss = " / ".join(f"{x['rss_start_mb'][u]:.0f}->{x['rss_warm_mb'].get(u, float('nan')):.0f}->"
                             f"{x['rss_end_mb'][u]:.0f}" for u in x["rss_start_mb"])
            print(f"  {scenario:<7}{tag:<10}{x['rps']:>7.1f} req/s  p50 {x['p50_ms']:>6.0f} ms  p99 {x['p99_ms']:>6.0f} ms  "
                  f"errors {x['errors']}  RSS MB start->warm->end {rss}")
    print(f"  batched / unbatched throughput (images): {r['serve_batched_vs_unbatched_rps']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = measure(args.clients, args.seconds)
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
