"""The Ray engine (features/ray_engine.py) against the local one, each as a ratio measured in the same run.

ray_overhead_ratio  Ray engine throughput (one actor with 2 CPUs, on a local Ray) / local engine throughput
                    (2 ONNX Runtime threads) over a default run's validation + embedding work on
                    caltech-dev10 (validate, split, train with 2 augmented views + val + test) into fresh caches,
                    on a Ray instance that is running and has run a job (as a team's cluster is);
                    ray_cold_run_ratio: the same run when it starts Ray itself (a one-off CLI run).
extract             the same ratio for one extraction call alone (clean views): the job's start-up
                    paid for a single split.
scaling             throughput with 1, 2, ... actors of 1 CPU on a generated set: the per-actor line.
big                 the same sizes validated AND extracted (Lite0 cut after block 3, 32 px), each engine:
                    the driver's peak RSS and the times (the 10k and 50k folders hard-link the 100k one's files).
rss                 the driver's peak RSS validating (listing + hash + decode check) generated folders of
                    10k / 50k / 100k small images, with each engine, each in a fresh process.

    python bench/ray_scale.py [overhead] [extract] [scaling] [rss] [big] [--sizes 10000,50000,100000] [--json FILE]

Ray runs small here (EDGEMAKER_RAY_CPUS, EDGEMAKER_RAY_STORE_MB: 2 CPUs, 200 MB object store) and is
shut down at the end of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
CALTECH = ROOT.parent / "shared" / "data" / "caltech-dev10"
RAY_ENV = {"EDGEMAKER_RAY_CPUS": "2", "EDGEMAKER_RAY_STORE_MB": "200",
           "EDGEMAKER_RAY_TMP": os.path.join(tempfile.gettempdir(), "emray-bench")}


def _ray_engine(actors: int, cpus: int):
    from edgemaker.features.ray_engine import RayEngine, default_init_kwargs
    from edgemaker.tasks.options import EngineOptions

    os.environ.update({k: os.environ.get(k, v) for k, v in RAY_ENV.items()})
    return RayEngine(EngineOptions("ray", actors=actors, cpus_per_actor=cpus), default_init_kwargs())


def _fresh(path: Path) -> Path:
    """A cache file path with no cache there (a previous bench run's is removed)."""
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return path


def _extract_rate(samples, engine, threads: int, tmp: Path, tag: str) -> float:
    """Windows per second of one cold extraction (fresh cache), clean views only."""
    from edgemaker.backbones import DEFAULT_IMAGE_BACKBONE, get_spec
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.features.cache import FeatureCache
    from edgemaker.features.extract import extract_embeddings

    backbone = Backbone(get_spec(DEFAULT_IMAGE_BACKBONE), threads)
    with FeatureCache(_fresh(tmp / f"{tag}.sqlite")) as cache:
        t = time.perf_counter()
        emb = extract_embeddings(samples, backbone, cache, engine=engine)
        return len(emb.vectors) / (time.perf_counter() - t)


def _run_rate(data: Path, kind: str, tmp: Path, tag: str, one_job: bool = True) -> tuple[float, int, float]:
    """Windows per second of a default run's validation + embedding work, fresh cache: what
    `edgemaker train` does before the head (pipeline.py: validate, split, the Ray job, create's extractions).
    `one_job=False`: without the one Ray job, each split's extraction its own pipeline (as before it).
    Returns (windows/s, windows, validation seconds)."""
    from edgemaker.data.splits import make_splits
    from edgemaker.data.validate import validate_folder
    from edgemaker.features.cache import FeatureCache
    from edgemaker.features.engines import engine_for
    from edgemaker.features.ray_job import embed_run
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.backbones import get_spec
    from edgemaker.tasks.classifier import classifier_for, embed_samples
    from edgemaker.tasks.options import ClassifierOptions, EngineOptions

    engine_options = EngineOptions("ray", actors=1, cpus_per_actor=2) if kind == "ray" else EngineOptions()
    options = ClassifierOptions(threads=2, engine=engine_options)
    engine = engine_for(engine_options) if kind == "ray" else None
    with FeatureCache(_fresh(tmp / f"{tag}.sqlite")) as cache:
        t = time.perf_counter()
        report = validate_folder(data, cache=cache, engine=engine)
        validate_s = time.perf_counter() - t
        splits = make_splits(report)
        classifier = classifier_for(report.modality)
        if engine is not None and one_job:
            embed_run(classifier, splits, options, cache)
        backbone = Backbone(get_spec(classifier.candidate_backbones(options)[0]), options.threads)
        windows = sum(len(embed_samples(backbone, samples, views, options, cache, None, name).vectors) for name, samples, views in
                      (("train", splits.train, options.augmentation.active_views), ("val", splits.val, 0),
                       ("test", splits.test, 0)))
        return windows / (time.perf_counter() - t), windows, validate_s


def overhead(tmp: Path) -> dict:
    """ray_overhead_ratio over a run's validation + embedding work (one Ray job for every split)."""
    from edgemaker.data.validate import validate_folder

    data = CALTECH if CALTECH.is_dir() else _generated(tmp / "gen-overhead", 480, 96)
    engine = _ray_engine(1, 2)
    engine.cluster_cpus()  # Ray started before timing: a cluster is already running in practice,
    validate_folder(data, engine=engine)  # and has run jobs (its workers started, Ray Data's actors up)
    _extract_rate(validate_folder(data).samples[:16], engine, 2, tmp, "warm")  # the ONNX graph exported once, for both
    local, windows, local_validate_s = _run_rate(data, "local", tmp, "run-local")
    ray_rate, _, ray_validate_s = _run_rate(data, "ray", tmp, "run-ray")
    per_split, _, _ = _run_rate(data, "ray", tmp, "run-ray-per-split", one_job=False)
    local2, _, _ = _run_rate(data, "local", tmp, "run-local2")  # the machine may drift: local before and after
    local_mean = (local + local2) / 2
    engine.ray.shutdown()
    cold, _, _ = _run_rate(data, "ray", tmp, "run-ray-cold")  # what one CLI run sees: Ray started by the run
    engine.ray.shutdown()
    return {"overhead_data": f"{data.name} ({windows} windows: validate + train with 2 views + val + test)",
            "local_run_windows_s": round(local_mean, 2), "ray_1x2_run_windows_s": round(ray_rate, 2),
            "ray_overhead_ratio": round(ray_rate / local_mean, 3),
            "ray_cold_run_ratio": round(cold / local_mean, 3),
            "ray_per_split_ratio": round(per_split / local_mean, 3),
            "validate_s": {"local": round(local_validate_s, 2), "ray": round(ray_validate_s, 2)},
            "load_average": round(os.getloadavg()[0], 2)}


def extract_only(tmp: Path, n: int = 10_000) -> dict:
    from edgemaker.data.validate import validate_folder

    data = CALTECH if CALTECH.is_dir() else _generated(tmp / "gen-overhead", 480, 96)
    samples = validate_folder(data).samples[:n]
    engine = _ray_engine(1, 2)
    engine.cluster_cpus()  # Ray started before timing: a cluster is already running in practice
    _extract_rate(samples[:16], engine, 2, tmp, "warm")  # the ONNX graph exported once, for both
    local = _extract_rate(samples, None, 2, tmp, "local")
    ray_rate = _extract_rate(samples, engine, 2, tmp, "ray")
    timing = engine.last_timing
    local2 = _extract_rate(samples, None, 2, tmp, "local2")  # the machine may drift: local before and after
    local_mean = (local + local2) / 2
    engine.ray.shutdown()
    return {"extract_data": f"{data.name} ({len(samples)} images)", "local_img_s": round(local_mean, 2),
            "ray_1x2_img_s": round(ray_rate, 2), "ray_extract_ratio": round(ray_rate / local_mean, 3),
            "ray_job_startup_s": round(timing["startup_s"], 2),
            "ray_steady_ratio": round(timing["steady_windows_s"] / local_mean, 3)}


def scaling(tmp: Path, n: int = 384, max_actors: int = 2) -> dict:
    from edgemaker.data.validate import validate_folder

    samples = validate_folder(_generated(tmp / f"gen-scaling-{n}", n, 96)).samples
    rows = {}
    engine = None
    for actors in range(1, max_actors + 1):
        engine = _ray_engine(actors, 1)
        if actors == 1:
            _extract_rate(samples[:8], engine, 1, tmp, "warm-s")
        end_to_end = _extract_rate(samples, engine, 1, tmp, f"scale{actors}")
        rows[actors] = {"img_s": round(end_to_end, 2), "steady_img_s": round(engine.last_timing["steady_windows_s"], 2),
                        "startup_s": round(engine.last_timing["startup_s"], 2)}
    engine.ray.shutdown()
    steady = [rows[a]["steady_img_s"] for a in (1, max_actors)]
    return {"scaling_images": n, "scaling_by_actors": rows,
            "scaling_per_extra_actor": round((steady[1] - steady[0]) / max(1, max_actors - 1) / steady[0], 3)}


def _generated(root: Path, n: int, size: int = 32, classes: int = 10) -> Path:
    """`n` distinct random PNGs of size x size in `classes` folders (kept for the next run)."""
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(n)
    for i in range(n):
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png",
                                                                                    compress_level=1)
    done.touch()
    return root


def _linked(source: Path, root: Path, n: int, classes: int = 10) -> Path:
    """The first `n` files of a generated folder as hard links in `root` (real files, no copy)."""
    done = root / ".complete"
    if done.exists():
        return root
    for i in range(n):  # _generated's names: file i in class folder i % classes
        path = source / f"c{i % classes}" / f"{i:06d}.png"
        target = root / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(path, target)
    done.touch()
    return root


def _big_child(folder: str, engine_kind: str) -> None:
    """In a fresh process: validate AND extract `folder` (Lite0 cut after block 3 at 32 px: the 100k run
    fits in minutes), print the driver's peak RSS (MB) after each stage and the times."""
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.backbones.truncated import truncated_spec
    from edgemaker.data.validate import validate_folder
    from edgemaker.features.cache import FeatureCache
    from edgemaker.features.extract import extract_embeddings

    engine = _ray_engine(None, 2) if engine_kind == "ray" else None
    if engine is not None:
        engine.cluster_cpus()
    backbone = Backbone(truncated_spec("lite0", 3, 32), 2)
    peak = lambda: round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    base = peak()
    with tempfile.TemporaryDirectory() as tmp, FeatureCache(Path(tmp) / "f.sqlite") as cache:
        t = time.perf_counter()
        report = validate_folder(folder, cache=cache, engine=engine)
        validate_s, after_validate = time.perf_counter() - t, peak()
        t = time.perf_counter()
        emb = extract_embeddings(report.samples, backbone, cache, engine=engine)
        extract_s = time.perf_counter() - t
    if engine is not None:
        engine.ray.shutdown()
    print(json.dumps({"files": len(report.samples), "embeddings": len(emb.vectors), "rss_before_mb": base,
                      "peak_rss_validate_mb": after_validate, "peak_rss_mb": peak(),
                      "validate_s": round(validate_s, 1), "extract_s": round(extract_s, 1),
                      "extract_img_s": round(len(emb.vectors) / extract_s, 1)}))


def big(tmp: Path, sizes: list[int]) -> dict:
    """Validate + extract generated folders of `sizes` small images with each engine (issue 14's
    100k-file check): the driver's peak RSS per size, and its growth from the smallest to the largest."""
    source = _generated(tmp / f"gen-{max(sizes)}", max(sizes))
    out: dict = {}
    for n in sizes:
        folder = source if n == max(sizes) else _linked(source, tmp / f"link-{n}", n)
        for kind in ("local", "ray"):
            row = _child("_big", folder, kind, f"big {n} {kind}")
            out.setdefault(kind, {})[n] = row
            print(f"  big {kind:<5} {n:>7} files: peak RSS {row['peak_rss_mb']:.0f} MB (after validation "
                  f"{row['peak_rss_validate_mb']:.0f}, before {row['rss_before_mb']:.0f}); validate {row['validate_s']:.1f} s, "
                  f"extract {row['extract_s']:.1f} s ({row['extract_img_s']:.0f} img/s)", flush=True)
    growth = {k: round(v[max(sizes)]["peak_rss_mb"] - v[min(sizes)]["peak_rss_mb"], 1) for k, v in out.items()}
    return {"big_driver": out, "big_rss_growth_mb": growth, "load_average": round(os.getloadavg()[0], 2)}


def _validate_child(folder: str, engine_kind: str) -> None:
    """In a fresh process: validate `folder`, print the driver's peak RSS (MB) and the time."""
    from edgemaker.data.validate import validate_folder
    from edgemaker.features.cache import FeatureCache

    engine = _ray_engine(None, 1) if engine_kind == "ray" else None
    if engine is not None:
        engine.cluster_cpus()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp, FeatureCache(Path(tmp) / "f.sqlite") as cache:
        t = time.perf_counter()
        report = validate_folder(folder, cache=cache, engine=engine)
        seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if engine is not None:
        engine.ray.shutdown()
    print(json.dumps({"files": len(report.samples), "peak_rss_mb": round(peak, 1),
                      "rss_before_mb": round(base, 1), "seconds": round(seconds, 1)}))


def rss(tmp: Path, sizes: list[int]) -> dict:
    out: dict = {}
    for n in sizes:
        folder = _generated(tmp / f"gen-{n}", n)
        for kind in ("local", "ray"):
            row = _child("_validate", folder, kind, f"validate {n} {kind}")
            out.setdefault(kind, {})[n] = row
            print(f"  rss {kind:<5} {n:>7} files: peak {row['peak_rss_mb']:.0f} MB "
                  f"(before validation {row['rss_before_mb']:.0f} MB), {row['seconds']:.1f} s", flush=True)
    growth = {k: round(v[max(sizes)]["peak_rss_mb"] - v[min(sizes)]["peak_rss_mb"], 1) for k, v in out.items()}
    return {"rss_driver": out, "rss_growth_mb": growth}


def _child(mode: str, folder: Path, kind: str, what: str) -> dict:
    """One measurement in a fresh process (its peak RSS is its own): the JSON row it prints last."""
    env = {**os.environ, "PYTHONPATH": str(SRC), **RAY_ENV}
    res = subprocess.run([sys.executable, __file__, mode, str(folder), kind], env=env, capture_output=True, text=True,
                         timeout=3600)
    if res.returncode:
        raise SystemExit(f"{what} failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["_validate"]:
        return _validate_child(sys.argv[2], sys.argv[3])
    if sys.argv[1:2] == ["_big"]:
        return _big_child(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["overhead", "scaling", "rss"])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "edgemaker-ray-bench"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGEMAKER_CACHE_DIR", str(tmp / "cache"))
    result: dict = {"cpu_count": os.cpu_count()}
    if "overhead" in args.parts:
        result.update(overhead(tmp))
        print(f"ray_overhead_ratio {result['ray_overhead_ratio']:.3f}   Ray 1 actor x 2 CPUs "
              f"{result['ray_1x2_run_windows_s']:.1f} windows/s vs local {result['local_run_windows_s']:.1f} on "
              f"{result['overhead_data']} (goal >= 0.85; load average {result['load_average']}); a pipeline per split "
              f"instead of one job: {result['ray_per_split_ratio']:.3f}; validation {result['validate_s']['ray']:.1f} s "
              f"on Ray vs {result['validate_s']['local']:.1f} s local; a run that starts its own Ray: "
              f"{result['ray_cold_run_ratio']:.3f}", flush=True)
    if "extract" in args.parts:
        result.update(extract_only(tmp))
        print(f"ray_extract_ratio {result['ray_extract_ratio']:.3f}   one clean extraction: Ray 1 actor x 2 CPUs "
              f"{result['ray_1x2_img_s']:.1f} img/s vs local {result['local_img_s']:.1f} img/s on "
              f"{result['extract_data']}; after the job's {result['ray_job_startup_s']:.1f} s "
              f"start-up: {result['ray_steady_ratio']:.3f}", flush=True)
    if "scaling" in args.parts:
        result.update(scaling(tmp))
        print(f"ray scaling (1-CPU actors, {result['scaling_images']} generated images): " + ", ".join(
            f"{k} actor(s) {v['img_s']:.1f} img/s ({v['steady_img_s']:.1f} after {v['startup_s']:.1f} s start-up)"
            for k, v in result["scaling_by_actors"].items()) + f"; per extra actor "
            f"{result['scaling_per_extra_actor']:+.3f}", flush=True)
    if "rss" in args.parts:
        result.update(rss(tmp, [int(s) for s in args.sizes.split(",")]))
        print(f"driver RSS growth {min(args.sizes.split(','), key=int)} -> {max(args.sizes.split(','), key=int)} "
              f"files: {result['rss_growth_mb']} MB (goal < 200)", flush=True)
    if "big" in args.parts:
        result.update(big(tmp, [int(s) for s in args.sizes.split(",")]))
        print(f"validate + extract, driver peak RSS growth {min(args.sizes.split(','), key=int)} -> "
              f"{max(args.sizes.split(','), key=int)} files: {result['big_rss_growth_mb']} MB (goal < 200)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
