"""Throughput, GPU utilisation, memory and the best batch size of each method, in one run (for a GPU session).

    python benchmarks/gpu_throughput.py --corpus ../shared/corpora/librispeech-dev \\
        [--methods mcadams,psegan,gengan,pcmelgan] [--batch-seconds 15,60,240,960] [--limit-seconds 900] \\
        [--device cuda] [--jobs 16] [--json gpu.json]

Two measurements per method:

* **model**: the first `--limit-seconds` of the corpus are decoded and
  resampled to the method's rate once, moved to the device, then processed in
  batches of about S seconds of audio for each S of `--batch-seconds` (one
  warm-up batch first; `torch.cuda.synchronize` around the timed pass).
  Reported: × real time, GPU utilisation (sampled by `gpu_monitor.py`),
  peak device memory (`torch.cuda.max_memory_allocated`) and the batch size
  that was fastest.
* **job**: `anoncli anonymize CORPUS --method M --device D --no-score` as a
  child process over the whole corpus with that best batch size
  (`--max-batch-seconds`), wall clock including start-up, decoding, writing
  and the manifest: × real time of the whole job.

The learned methods analyse and resynthesise with WORLD (pyworld) on the CPU,
so their figures show how much the CPU side limits a GPU run. Without a GPU
(`--device cpu`) the same script runs on the CPU, which is how it is tested.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_audio(corpus: Path, rate: int | None, limit_s: float):
    """(waves as float32 numpy arrays at `rate` or their own rate, utterances, seconds) of the corpus's first files."""
    from anoncli.audio import read_audio, resample
    from anoncli.corpus import open_corpus

    waves, utts, total = [], [], 0.0
    for utt in open_corpus(corpus).utterances:
        audio = read_audio(utt.path)
        target = rate or audio.sample_rate
        waves.append(resample(audio.samples, audio.sample_rate, target))
        utts.append(utt)
        total += audio.duration_s
        if total >= limit_s:
            break
    return waves, utts, total


def batches_of(waves: list, rate: int, seconds: float) -> list[list[int]]:
    """Consecutive index groups of about `seconds` of audio each (at least one wave per group)."""
    groups, current, current_s = [], [], 0.0
    for index, wave in enumerate(waves):
        current.append(index)
        current_s += len(wave) / rate
        if current_s >= seconds:
            groups.append(current)
            current, current_s = [], 0.0
    if current:
        groups.append(current)
    return groups


def measure_model(name: str, corpus: Path, device: str, batch_seconds: list[float], limit_s: float) -> dict:
    """Process the loaded audio once per batch size; × real time, utilisation and peak memory for each."""
    import torch

    sys.path.insert(0, str(HERE))
    from gpu_monitor import GpuMonitor

    from anoncli.methods import MethodOptions, create_method

    method = create_method(name, MethodOptions(device=device, seed=0))
    method.prepare()
    rate = method.sample_rate
    waves, utts, audio_s = load_audio(corpus, rate, limit_s)
    rate = rate or 16000
    params = [method.utterance_params(u) for u in utts]
    if method.tensor_inputs:
        waves = [torch.from_numpy(w).to(device) for w in waves]
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    rows = []
    for seconds in batch_seconds:
        groups = batches_of(waves, rate, seconds)
        method.process([waves[i] for i in groups[0]], [params[i] for i in groups[0]])  # warm-up
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        started = time.perf_counter()
        with GpuMonitor(interval_s=0.05) as gpu:
            for group in groups:
                method.process([waves[i] for i in group], [params[i] for i in group])
            sync()
        wall = time.perf_counter() - started
        rows.append(
            {
                "batch_seconds": seconds,
                "batches": len(groups),
                "audio_s": round(audio_s, 2),
                "wall_s": round(wall, 4),
                "x_realtime": round(audio_s / wall, 1),
                "gpu_utilisation": gpu.summary(),
                "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
            }
        )
        peak = f"; peak {rows[-1]['peak_memory_mb']:.0f} MB" if cuda else ""
        print(
            f"  model {name} batch {seconds:g} s: {audio_s / wall:.0f}x real time "
            f"({len(groups)} batches, {wall:.2f} s){'; ' + gpu.summary() if gpu.summary() else ''}{peak}",
            flush=True,
        )
    best = max(rows, key=lambda row: row["x_realtime"])
    return {"rows": rows, "best_batch_seconds": best["batch_seconds"], "best_x_realtime": best["x_realtime"]}


def measure_job(name: str, corpus: Path, device: str, batch_seconds: float, jobs: int | None) -> dict:
    """`anoncli anonymize` over the whole corpus in a child process; × real time of the whole job."""
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as tmp:
        out = Path(tmp) / "out"
        command = [
            sys.executable,
            "-m",
            "anoncli",
            "anonymize",
            str(corpus),
            "--method",
            name,
            "--out",
            str(out),
            "--device",
            device,
            "--no-score",
            "--no-progress",
            "--max-batch-seconds",
            str(batch_seconds),
        ]
        if jobs:
            command += ["--jobs", str(jobs)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            return {"error": f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}"}
        record = json.loads((out / "run.json").read_text())
    audio_s = record["timings"]["audio_s"]
    print(
        f"  job {name}: {audio_s / wall:.0f}x real time whole process ({wall:.1f} s for {audio_s:.0f} s of audio; "
        f"{record['timings']['realtime_factor']:.0f}x inside the job)",
        flush=True,
    )
    return {
        "wall_s": round(wall, 2),
        "audio_s": round(audio_s, 1),
        "x_realtime": round(audio_s / wall, 1),
        "job_x_realtime": round(record["timings"]["realtime_factor"], 1),
        "command": " ".join(command[1:]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora/librispeech-dev"))
    parser.add_argument("--methods", default="mcadams,psegan,gengan,pcmelgan")
    parser.add_argument("--batch-seconds", default="15,60,240,960", help="comma-separated seconds of audio per batch")
    parser.add_argument("--limit-seconds", type=float, default=900.0, help="audio for the model measurement")
    parser.add_argument("--device", default=None, help="cuda when available, else cpu")
    parser.add_argument("--jobs", type=int, default=None, help="--jobs of the whole-job run (default: anoncli's)")
    parser.add_argument("--skip-job", action="store_true", help="only the model measurement")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(1 if device == "cpu" else max(1, (os.cpu_count() or 1) // 2))
    sizes = [float(s) for s in args.batch_seconds.split(",") if s.strip()]
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"device {device}: {where}; load {os.getloadavg()[0]:.2f}", flush=True)
    results = {"device": device, "device_name": where, "load_before": os.getloadavg()[0], "methods": {}}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        print(f"{name}:", flush=True)
        entry = {"model": measure_model(name, args.corpus, device, sizes, args.limit_seconds)}
        if not args.skip_job:
            entry["job"] = measure_job(name, args.corpus, device, entry["model"]["best_batch_seconds"], args.jobs)
        results["methods"][name] = entry
    results["load_after"] = os.getloadavg()[0]
    print(
        "\n| method | best batch (s of audio) | model × real time | peak memory MB | GPU utilisation | whole job × real time |"
    )
    print("|---|---|---|---|---|---|")
    for name, entry in results["methods"].items():
        best = max(entry["model"]["rows"], key=lambda row: row["x_realtime"])
        job = entry.get("job", {})
        print(
            f"| {name} | {best['batch_seconds']:g} | {best['x_realtime']:.0f} | {best['peak_memory_mb'] or '–'} | "
            f"{best['gpu_utilisation'] or '–'} | {job.get('x_realtime', job.get('error', '–'))} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
