"""Write the measured part of docs/benchmarks.md from `make bench`'s JSON.

    make bench && python tools/benchmarks_page.py [--results bench-results.json] [--probe bench-probe.json]

Only the text between the page's `<!-- bench:start -->` and `<!-- bench:end -->` lines is replaced;
the rest of the page (earlier measurements, each with its date and machine) is kept as written.
The date, commit and machine come from the JSON's `measured` block (bench/machine.py); a JSON written
before that block existed gets "not recorded", never this machine's details.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

# (key, what it measures, goal); a key missing from the JSON (an optional part was skipped) is left out.
MEASURES = [
    ("extract_ratio", "end-to-end extraction from image files / raw ONNX Runtime on decoded tensors", ">= 0.8"),
    ("ort_vs_eager", "raw ONNX Runtime / PyTorch eager, images per second", ""),
    ("warm_retrain_ratio", "warm-cache retrain / cold run (validate + features + head)", "<= 0.10"),
    ("warm_full_run_ratio", "warm / cold whole `train` run, exports included", ""),
    ("int8_size_ratio", "model_int8.onnx / model_fp32.onnx size", "<= 0.30"),
    ("tflite_int8_size_ratio", "model_int8.tflite / model_fp32.tflite size", ""),
    ("finetune_epoch_ratio", "a fine-tune epoch on cached activations / through the whole backbone", "<= 0.33"),
    ("export_share", "caltech-hard40 cold default run: export seconds / total seconds", "<= 0.4"),
    ("cold_s_per_1k_train_images", "that run's seconds per 1,000 training images", ""),
    ("compare_rerun_ratio", "`edgemaker compare` run again / its first run", "< 0.20"),
    ("all_depths_extract_ratio", "every Lite0 depth in one pass / the full backbone alone", "<= 1.15"),
    ("serve_rps", "`serve --model`, requests per second under load", ""),
    ("serve_p99_ms", "the same, 99th percentile latency (ms)", ""),
    ("serve_errors", "the same, failed requests", "0"),
    ("ray_overhead_ratio", "Ray engine (one 2-CPU actor) / local engine, a run's validation + extraction", ">= 0.85"),
]


def fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def machine_line(measured: dict | None) -> str:
    if not measured:
        return "Date, commit and machine: not recorded in this JSON."
    ram = f", {measured['ram_gib']} GiB RAM" if measured.get("ram_gib") else ""
    commit = f" on commit {measured['commit']}" if measured.get("commit") else ""
    return (f"Measured {measured.get('date', 'on an unrecorded date')}{commit}: "
            f"{measured.get('cpu', 'CPU not recorded')}, {measured.get('cores', '?')} cores{ram}, "
            f"{measured.get('os', 'OS not recorded')}, Python {measured.get('python', '?')}.")


def results_section(results: dict) -> list[str]:
    goals = results.get("goals_met", {})
    lines = ["### `make bench`", "", machine_line(results.get("measured")), "",
             f"Data: `{Path(str(results.get('data', '?'))).name}`.", "",
             "| measure | what | value | goal | met |", "| --- | --- | ---: | --- | --- |"]
    for key, what, goal in MEASURES:
        if key in results:
            met = {True: "yes", False: "**no**"}.get(goals.get(key), "")
            lines.append(f"| `{key}` | {what} | {fmt(results[key])} | {goal} | {met} |")
    if "test_accuracy" in results:
        lines += ["", f"Test accuracy of each file on the image set: `{fmt(results['test_accuracy'])}`."]
    audio = results.get("audio") or {}
    if audio:
        lines += ["", "| audio backbone | clips/s | windows/s end-to-end | windows/s raw | windowing overhead |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, row in audio.items():
            lines.append(f"| `{name}` | {row['clips_s']:.1f} | {row['windows_s']:.1f} | {row['raw_windows_s']:.1f} | "
                         f"{row['windowing_overhead']:.1%} |")
    return lines


def probe_section(probe) -> list[str]:
    measured, sets = (probe.get("measured"), probe.get("sets", [])) if isinstance(probe, dict) else (None, probe)
    lines = ["### The default head against a linear probe (`bench/probe.py`)", "", machine_line(measured), "",
             "Accuracy on validation / test, sample level (a clip is the mean of its windows).", "",
             "| data | head | val | test | seconds |", "| --- | --- | ---: | ---: | ---: |"]
    for entry in sets:
        name = Path(str(entry["data"])).name
        for head, row in entry["rows"].items():
            lines.append(f"| {name} ({entry['backbone']}) | {head} | {row['val']:.3f} | {row['test']:.3f} | "
                         f"{row['seconds']:.2f} |")
    return lines


def generated(results: dict | None, probe) -> str:
    if results is None and probe is None:
        body = ["`make bench` results have not been generated into this page yet: run `make bench`, then",
                "`python tools/benchmarks_page.py`."]
    else:
        body = (results_section(results) if results is not None else []) + \
               ([""] if results is not None and probe is not None else []) + \
               (probe_section(probe) if probe is not None else [])
    return "\n".join([START, "", *body, "", END])


def render(page: str, results: dict | None, probe) -> str:
    if START not in page or END not in page:
        raise SystemExit(f"error: the page lacks the {START} / {END} lines; put them back where the "
                         "generated section goes")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + generated(results, probe) + tail


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "bench-results.json")
    parser.add_argument("--probe", type=Path, default=ROOT / "bench-probe.json")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    results, probe = read_json(args.results), read_json(args.probe)
    if results is None and probe is None:
        raise SystemExit(f"error: neither {args.results} nor {args.probe} exists; run `make bench` first")
    from edgemaker.atomic import write_text

    write_text(args.page, render(args.page.read_text(), results, probe))
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
