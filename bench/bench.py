"""`make bench`: speed and size, each as a ratio against a baseline measured in the same run.

extract_ratio       end-to-end extraction from image files on disk (decode + resize + ONNX Runtime,
                    no cache) / the raw ONNX Runtime backbone on pre-decoded tensors. Goal >= 0.8.
warm_retrain_ratio  a retrain of the same run with a warm cache / the cold run, counting what a retrain
                    does (validate + features + head training). Goal <= 0.10.
warm_full_run_ratio the same for the whole `train` run, exports and their evaluation included.
int8_size_ratio     model_int8.onnx size / model_fp32.onnx size (tflite_int8_size_ratio: the same for .tflite).
export_share        on caltech-hard40 (1,880 training photos), a cold default run: export seconds (files
                    built, checked on validation, re-evaluated on test) / total seconds. Goal <= 0.4.
cold_s_per_1k_train_images  that run's total seconds per 1,000 training images.
finetune_epoch_ratio one --fine-tune epoch (last K blocks + head, forward and backward) on cached cut
                    activations / the same epoch without the cache (the whole backbone forward in PyTorch,
                    backward through the same trained blocks), both from decoded images. Goal <= 0.33.
audio rows          clips/s of end-to-end extraction for each audio backbone (decode, resample, silence
                    removal, windows, in-graph log-mel, network), windows/s of the raw backbone on
                    ready windows, and the windowing overhead (1 - end-to-end / raw, in window terms).
compare_rerun_ratio  `edgemaker compare` (efficientnet_lite0 + small_cnn, one seed) run again with the
                    same data and cache / its first run from an empty cache (embeddings, the trained
                    small_cnn and the int8 files are reused; heads are fitted again). Goal < 0.20.
all_depths_extract_ratio  the pooled features after every EfficientNet-Lite0 block (and the full
                    backbone's) in one ONNX graph, for the budget search / the full backbone alone, same
                    images (pre-decoded, 224 px), best of 3 alternating passes each. Goal <= 1.15.
Data: ../shared/data/caltech-dev10 and esc10-dev9 when present, else generated sets.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def dataset(tmp: Path) -> Path:
    real = ROOT.parent / "shared" / "data" / "caltech-dev10"
    if real.is_dir():
        return real
    from edgemaker.synthetic import make_dataset

    make_dataset(tmp / "generated", per_class=120, seed=0)
    return tmp / "generated"


def extraction(data: Path, n: int = 480) -> dict:
    from edgemaker import validate_folder
    from edgemaker.backbones import DEFAULT_IMAGE_BACKBONE, get_builder, get_spec
    from edgemaker.backbones.runtime import Backbone, with_uint8_input
    from edgemaker.backbones.weights import resolve_weights
    from edgemaker.data.images import load_for_model
    from edgemaker.features.extract import extract_embeddings

    samples = validate_folder(data).samples[:n]
    spec = get_spec(DEFAULT_IMAGE_BACKBONE)
    backbone = Backbone(spec)
    batch = 16
    tensors = np.stack([load_for_model(s.path.read_bytes(), spec.image) for s in samples])
    backbone.embed(tensors[:batch])

    def raw() -> float:
        t = time.perf_counter()
        for i in range(0, len(tensors), batch):
            backbone.embed(tensors[i : i + batch])
        return len(tensors) / (time.perf_counter() - t)

    raw_before = raw()
    t = time.perf_counter()
    extract_embeddings(samples, backbone, None, batch_size=batch)
    e2e = len(samples) / (time.perf_counter() - t)
    raw_after = raw()
    raw_img_s = (raw_before + raw_after) / 2

    import torch

    module = with_uint8_input(get_builder(spec.name)(spec, resolve_weights(spec.weights)), spec.image)
    x = torch.from_numpy(tensors[:64])
    with torch.no_grad():
        module(x[:batch])
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            module(x[i : i + batch])
        eager = len(x) / (time.perf_counter() - t)
    return {"images": len(samples), "raw_ort_img_s": raw_img_s, "end_to_end_img_s": e2e,
            "torch_eager_img_s": eager, "extract_ratio": e2e / raw_img_s, "ort_vs_eager": raw_img_s / eager}


def finetune_epoch(data: Path, n: int = 96, k: int = 3, batch: int = 32) -> dict:
    """Seconds of one fine-tune epoch over `n` images, with and without the cut-activation cache."""
    import torch

    from edgemaker import validate_folder
    from edgemaker.backbones import DEFAULT_IMAGE_BACKBONE, get_spec
    from edgemaker.data.images import load_for_model
    from edgemaker.features.activations import PrefixRunner, prefix_onnx
    from edgemaker.tasks.finetune import block_count, prefix_module, tail_module, trunk

    samples = validate_folder(data).samples
    samples = samples[:: max(1, len(samples) // n)][:n]
    spec = get_spec(DEFAULT_IMAGE_BACKBONE)
    cut = block_count(spec) - k
    images = np.stack([load_for_model(s.path.read_bytes(), spec.image) for s in samples])
    acts = PrefixRunner(prefix_onnx(spec, cut, prefix_module), None)(images)  # the one-off cached part
    labels = torch.from_numpy(np.arange(len(samples)) % 10)
    net = trunk(spec)
    prefix = prefix_module(spec, cut)
    mean = torch.tensor(spec.image.mean).view(1, 3, 1, 1)
    inv_std = 1 / torch.tensor(spec.image.std).view(1, 3, 1, 1)
    rng = np.random.default_rng(0)
    tail = tail_module(net, cut, rng.normal(0, 0.01, (10, 1280)), np.zeros(10), 0.2)
    opt = torch.optim.AdamW([p for p in tail.parameters() if p.requires_grad], lr=1e-4)

    def epoch(cached: bool) -> float:
        t = time.perf_counter()
        for i in range(0, len(samples), batch):
            if cached:
                x = torch.from_numpy(acts[i : i + batch].astype(np.float32))
            else:
                with torch.no_grad():  # nothing before the cut trains, so autograd would not go there anyway
                    x = prefix((torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() - mean) * inv_std)
            loss = torch.nn.functional.cross_entropy(tail(x), labels[i : i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    epoch(True)  # warm-up
    cached_s = min(epoch(True) for _ in range(2))
    full_s = epoch(False)
    return {"finetune_images": len(samples), "finetune_k": k, "finetune_cached_epoch_s": cached_s,
            "finetune_full_epoch_s": full_s, "finetune_epoch_ratio": cached_s / full_s}


def runs(data: Path, tmp: Path) -> dict:
    from edgemaker import ImageClassifierOptions
    from edgemaker.pipeline import train_run

    options = ImageClassifierOptions(cache_dir=tmp / "fresh-cache")  # cold: nothing cached, not even the ONNX backbone
    formats = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")
    cold = train_run(data, tmp / "cold", options, formats=formats)
    warm = train_run(data, tmp / "warm", options, formats=formats)

    def retrain(m: dict) -> float:
        t = m["timings"]
        return t["validate_s"] + t["extract_s"] + t["train_s"]

    sizes = {e["format"]: e["size_bytes"] for e in cold["exports"]}
    return {
        "cold_retrain_s": retrain(cold), "warm_retrain_s": retrain(warm),
        "warm_retrain_ratio": retrain(warm) / retrain(cold),
        "cold_total_s": cold["timings"]["total_s"], "warm_total_s": warm["timings"]["total_s"],
        "warm_full_run_ratio": warm["timings"]["total_s"] / cold["timings"]["total_s"],
        "fp32_bytes": sizes["onnx-fp32"], "int8_bytes": sizes["onnx-int8"],
        "int8_size_ratio": sizes["onnx-int8"] / sizes["onnx-fp32"],
        "tflite_int8_size_ratio": sizes["tflite-int8"] / sizes["tflite-fp32"],
        "test_accuracy": {e["format"]: e["test_accuracy"] for e in cold["exports"]},
        "cold_timings": cold["timings"], "warm_timings": warm["timings"],
    }


def hard_cold_run(tmp: Path) -> dict:
    """A cold default `train` on caltech-hard40: where the seconds go, exports against the rest."""
    from edgemaker import ImageClassifierOptions
    from edgemaker.pipeline import train_run

    data = ROOT.parent / "shared" / "data" / "caltech-hard40"
    if not data.is_dir():
        return {}
    m = train_run(data, tmp / "hard", ImageClassifierOptions(cache_dir=tmp / "hard-cache"))
    t = m["timings"]
    return {"hard_data": str(data), "hard_timings": t, "export_share": t["export_s"] / t["total_s"],
            "cold_s_per_1k_train_images": t["total_s"] / (m["splits"]["train"] / 1000),
            "hard_exports": {e["format"]: {k: e[k] for k in ("test_accuracy", "agreement_with_float", "size_bytes")}
                             for e in m["exports"]},
            "hard_test_accuracy": m["test"]["accuracy"], "hard_int8_head_choice": m["training"]["int8_head_choice"]}


def audio(tmp: Path) -> dict:
    from edgemaker import validate_folder
    from edgemaker.backbones import DEFAULT_AUDIO_BACKBONES, get_spec
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.data.audio import clip_windows
    from edgemaker.features.extract import extract_embeddings

    real = ROOT.parent / "shared" / "data" / "esc10-dev9"
    if real.is_dir():
        data = real / "train"
    else:
        from edgemaker.synthetic import make_sound_dataset

        make_sound_dataset(tmp / "sounds", per_class=40, seed=0)
        data = tmp / "sounds"
    samples = validate_folder(data).samples[:120]
    rows = {}
    for name in DEFAULT_AUDIO_BACKBONES:
        backbone = Backbone(get_spec(name))
        windows = np.concatenate([np.stack(list(clip_windows(s.path, backbone.spec.audio))) for s in samples])
        backbone.embed(windows[:16])
        t = time.perf_counter()
        for i in range(0, len(windows), 16):
            backbone.embed(windows[i : i + 16])
        raw_windows_s = len(windows) / (time.perf_counter() - t)
        t = time.perf_counter()
        emb = extract_embeddings(samples, backbone, None)
        elapsed = time.perf_counter() - t
        rows[name] = {"clips_s": len(samples) / elapsed, "windows_s": len(emb.vectors) / elapsed,
                      "raw_windows_s": raw_windows_s, "windows_per_clip": len(emb.vectors) / len(samples),
                      "windowing_overhead": 1 - (len(emb.vectors) / elapsed) / raw_windows_s}
    return {"audio_data": str(data), "audio_clips": len(samples), "audio": rows}


def serve_load() -> dict:
    """`serve --model` under load: 32 clients x 60 s, images and a sound mix (bench/serve_load.py)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from serve_load import measure

    return measure(clients=32, seconds=60)


def serve_report(result: dict) -> None:
    from serve_load import report

    report(result)
    print(f"{'serve_rps':<22}{result['serve_rps']:>10.1f}   p50 {result['serve_p50_ms']:.0f} ms, "
          f"p99 {result['serve_p99_ms']:.0f} ms, errors {result['serve_errors']}, server RSS "
          f"{result['serve_rss_start_mb']:.0f} -> {result['serve_rss_end_mb']:.0f} MB")


def compare_rerun(data: Path, tmp: Path) -> dict:
    """The same small compare twice on its own cache: the first run computes everything, the second
    should only fit heads and copy cached files."""
    from edgemaker.experiments.compare import run_compare

    times = []
    for k in (1, 2):
        t = time.perf_counter()
        result = run_compare(data, "efficientnet_lite0,small_cnn", tmp / f"compare{k}", repeats=1,
                             cache_dir=tmp / "compare-cache")
        times.append(time.perf_counter() - t)
    return {"compare_rerun_ratio": times[1] / times[0], "compare_first_s": times[0], "compare_second_s": times[1],
            "compare_second_cache": result["cache"]}


def all_depths(data: Path, n: int = 128, batch: int = 16, repeats: int = 3) -> dict:
    """Seconds to embed `n` images through every depth at once vs through the full backbone alone."""
    from edgemaker import validate_folder
    from edgemaker.backbones import DEFAULT_IMAGE_BACKBONE, get_spec
    from edgemaker.backbones.runtime import Backbone
    from edgemaker.data.images import load_for_model
    from edgemaker.features.depths import AllDepthsBackbone

    spec = get_spec(DEFAULT_IMAGE_BACKBONE)
    samples = validate_folder(data).samples[:n]
    tensors = np.stack([load_for_model(s.path.read_bytes(), spec.image) for s in samples])
    full, every = Backbone(spec), AllDepthsBackbone(spec.name.removeprefix("efficientnet_"), spec.image.size)
    for model in (full, every):
        model.embed(tensors[:batch])  # warm-up

    def timed(model) -> float:
        t = time.perf_counter()
        for i in range(0, len(tensors), batch):
            model.embed(tensors[i : i + batch])
        return time.perf_counter() - t

    full_s, every_s = [], []
    for _ in range(repeats):  # alternate, so a busy machine slows both alike
        full_s.append(timed(full))
        every_s.append(timed(every))
    return {"all_depths_images": len(tensors), "all_depths_s": min(every_s), "full_backbone_s": min(full_s),
            "all_depths_extract_ratio": min(every_s) / min(full_s), "all_depths_outputs": len(every.dims)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("EDGEMAKER_CACHE_DIR", str(tmp / "cache"))
        data = dataset(tmp)
        result = {"measured": machine.describe(), "data": str(data), "cpu_count": os.cpu_count(), **extraction(data), **finetune_epoch(data),
                  **runs(data, tmp), **audio(tmp), **hard_cold_run(tmp), **compare_rerun(data, tmp),
                  **all_depths(data), **serve_load()}
    goals = [("extract_ratio", ">=", 0.8), ("warm_retrain_ratio", "<=", 0.10), ("int8_size_ratio", "<=", 0.30),
             ("finetune_epoch_ratio", "<=", 0.33), ("compare_rerun_ratio", "<=", 0.20),
             ("all_depths_extract_ratio", "<=", 1.15)]
    if "export_share" in result:
        goals.append(("export_share", "<=", 0.4))
    print(f"data: {result['data']}  ({result['cpu_count']} cores)")
    print(f"{'measure':<22}{'value':>10}   baseline / detail")
    print(f"{'extract_ratio':<22}{result['extract_ratio']:>10.3f}   {result['end_to_end_img_s']:.1f} img/s from files "
          f"vs {result['raw_ort_img_s']:.1f} img/s raw ORT (goal >= 0.8)")
    print(f"{'ort_vs_eager':<22}{result['ort_vs_eager']:>10.2f}   raw ORT vs PyTorch eager {result['torch_eager_img_s']:.1f} img/s")
    print(f"{'warm_retrain_ratio':<22}{result['warm_retrain_ratio']:>10.3f}   {result['warm_retrain_s']:.2f} s warm vs "
          f"{result['cold_retrain_s']:.2f} s cold (validate+features+head; goal <= 0.10)")
    print(f"{'warm_full_run_ratio':<22}{result['warm_full_run_ratio']:>10.3f}   {result['warm_total_s']:.2f} s vs "
          f"{result['cold_total_s']:.2f} s (whole run, exports included)")
    print(f"{'int8_size_ratio':<22}{result['int8_size_ratio']:>10.3f}   {result['int8_bytes'] / 1e6:.2f} MB vs "
          f"{result['fp32_bytes'] / 1e6:.2f} MB (goal <= 0.30)")
    print(f"{'tflite_int8_size_ratio':<22}{result['tflite_int8_size_ratio']:>10.3f}   model_int8.tflite / model_fp32.tflite")
    print(f"{'finetune_epoch_ratio':<22}{result['finetune_epoch_ratio']:>10.3f}   {result['finetune_cached_epoch_s']:.2f} s "
          f"on cached activations vs {result['finetune_full_epoch_s']:.2f} s through the whole backbone "
          f"({result['finetune_images']} images, last {result['finetune_k']} blocks; goal <= 0.33)")
    print(f"test accuracy: {result['test_accuracy']}")
    if "export_share" in result:
        t = result["hard_timings"]
        print(f"{'export_share':<22}{result['export_share']:>10.3f}   caltech-hard40 cold default run: export "
              f"{t['export_s']:.1f} s of {t['total_s']:.1f} s (extract {t['extract_s']:.1f} s; goal <= 0.4)")
        print(f"{'cold_s_per_1k_train':<22}{result['cold_s_per_1k_train_images']:>10.1f}   seconds per 1,000 training images")
        print(f"  export steps: {t.get('export_steps')}; int8 head choice: {result['hard_int8_head_choice']}")
        print(f"  exports: {result['hard_exports']}")
    print(f"audio ({result['audio_clips']} clips of {result['audio_data']}):")
    for name, row in result["audio"].items():
        print(f"  {name:<24}{row['clips_s']:>8.1f} clips/s  {row['windows_s']:>7.1f} windows/s end-to-end vs "
              f"{row['raw_windows_s']:.1f} raw ({row['windows_per_clip']:.1f} windows/clip); windowing overhead "
              f"{row['windowing_overhead']:.1%}")
    serve_report(result)
    print(f"{'compare_rerun_ratio':<22}{result['compare_rerun_ratio']:>10.3f}   {result['compare_second_s']:.1f} s "
          f"second run vs {result['compare_first_s']:.1f} s first (compare lite0 + small_cnn, 1 seed; goal < 0.20)")
    print(f"{'all_depths_extract_ratio':<22}{result['all_depths_extract_ratio']:>10.3f}   "
          f"{result['all_depths_s']:.2f} s for all {result['all_depths_outputs']} depths vs {result['full_backbone_s']:.2f} s "
          f"full backbone alone ({result['all_depths_images']} images; goal <= 1.15)")
    result.update(ray_section())
    if "ray_overhead_ratio" in result:
        goals.append(("ray_overhead_ratio", ">=", 0.85))
    result["goals_met"] = {k: (result[k] >= v if op == ">=" else result[k] <= v) for k, op, v in goals}
    (ROOT / "bench-results.json").write_text(json.dumps(result, indent=2) + "\n")
    print("wrote bench-results.json")


def ray_section() -> dict:
    """The Ray engine (bench/ray_scale.py): overhead against the local engine, and the per-actor line;
    skipped without the ray extra. RSS at 10k-100k files: `python bench/ray_scale.py rss` (minutes)."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        print("ray: not installed (pip install 'edgemaker[ray]'); ray_overhead_ratio skipped")
        return {}
    sys.path.insert(0, str(ROOT / "bench"))
    import ray_scale

    saved = os.environ.get("EDGEMAKER_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp_name:
        os.environ["EDGEMAKER_CACHE_DIR"] = str(Path(tmp_name) / "cache")
        try:
            out = {**ray_scale.overhead(Path(tmp_name)), **ray_scale.scaling(Path(tmp_name))}
        finally:
            if saved is None:
                os.environ.pop("EDGEMAKER_CACHE_DIR", None)
            else:
                os.environ["EDGEMAKER_CACHE_DIR"] = saved
    print(f"{'ray_overhead_ratio':<22}{out['ray_overhead_ratio']:>10.3f}   Ray engine, 1 actor x 2 CPUs "
          f"{out['ray_1x2_run_windows_s']:.1f} windows/s vs local {out['local_run_windows_s']:.1f} on "
          f"{out['overhead_data']} (goal >= 0.85); a run that starts its own Ray: {out['ray_cold_run_ratio']:.3f}")
    print(f"{'ray_scaling':<22}{out['scaling_per_extra_actor']:>10.3f}   steady throughput gained per extra 1-CPU "
          f"actor / 1 actor: " + ", ".join(f"{k} actor(s) {v['steady_img_s']:.1f} img/s"
                                          for k, v in out["scaling_by_actors"].items()))
    return out


if __name__ == "__main__":
    main()
