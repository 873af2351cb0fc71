"""Time and peak memory of resampling at odd sample rates, one fresh process per rate.

A polyphase resampler built from the rates' greatest common divisor (what
torchaudio does) blows up for rates such as 44101 Hz: its kernel has one
phase per output sample of the reduced ratio. anoncli resamples on the CPU
with libsoxr, whose cost is bounded for any pair of rates. The target: a
1-second file at any rate between 4 kHz and 192 kHz takes < 2 s and < 300 MB
of memory beyond what the same run costs for a 16 kHz file.

Two measurements, each in its own process so that peak memory is that rate's:

- `resample`: 1 s of noise at RATE -> 16 kHz (the McAdams working rate) and
  back, as `anonymize` does; wall time of the two calls and the growth of
  peak RSS over the process's peak before them.
- `--whole`: `anoncli anonymize` on a folder holding one 1-second file at
  RATE, start-up included; wall time and peak RSS of the whole process,
  reported next to the same run on a 16 kHz file.

    python benchmarks/odd_rates.py                       # resample only, default rates
    python benchmarks/odd_rates.py --whole --rates 16000 44101 22254
    python benchmarks/odd_rates.py --backend torchaudio --rates 44101   # the old path, for comparison

Run it on a quiet machine; it prints a table and, with --json FILE, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_RATES = (4000, 8000, 11025, 16000, 22050, 22254, 32000, 44100, 44101, 48000, 96000, 176400, 192000)
WORKING_RATE = 16000
TARGET_S, TARGET_MB = 2.0, 300.0

# Runs in a fresh interpreter: prints one JSON line.
_CHILD = r"""
import json, resource, sys, time
import numpy as np
rate, backend = int(sys.argv[1]), sys.argv[2]
x = (np.random.default_rng(0).standard_normal(rate) * 0.1).astype(np.float32)
if backend == "soxr":
    from anoncli.audio import resample
    run = lambda a, r1, r2: resample(a, r1, r2)
else:
    import torch, torchaudio
    run = lambda a, r1, r2: torchaudio.functional.resample(torch.from_numpy(a), r1, r2).numpy()
run(np.zeros(64, np.float32), 8000, 16000)  # import and first-call costs are not the rate's
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
y = run(x, rate, %(working)d)
z = run(y, %(working)d, rate)
wall = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rate": rate, "wall_s": wall, "extra_mb": (after - before) / 1024, "out_len": len(z)}))
""" % {"working": WORKING_RATE}  # noqa: UP031 (a %-template keeps the child's own braces as they are)


def measure_resample(rate: int, backend: str, timeout: float) -> dict:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(rate), backend], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"rate": rate, "wall_s": None, "extra_mb": None, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"rate": rate, "wall_s": None, "extra_mb": None, "error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_whole(rate: int, work: Path, timeout: float) -> dict:
    """`anoncli anonymize` on one 1-second file at `rate`, in a child whose peak RSS we read from wait4."""
    import numpy as np
    import soundfile as sf

    corpus = work / f"corpus_{rate}"
    out = work / f"out_{rate}"
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    corpus.mkdir(parents=True)
    sf.write(corpus / "one.wav", np.random.default_rng(0).standard_normal(rate) * 0.1, rate, subtype="PCM_16")
    command = [
        sys.executable,
        "-m",
        "anoncli",
        "anonymize",
        str(corpus),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--no-progress",
        "--no-score",
    ]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            child.kill()
            os.wait4(child.pid, 0)
            return {"rate": rate, "wall_s": None, "peak_mb": None, "error": f"timed out after {timeout:.0f} s"}
        time.sleep(0.01)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    result = {"rate": rate, "wall_s": wall, "peak_mb": usage.ru_maxrss / 1024, "exit": code}
    if code != 0:
        result["error"] = child.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=list(DEFAULT_RATES))
    parser.add_argument(
        "--backend",
        choices=("soxr", "torchaudio"),
        default="soxr",
        help="resample-only runs: anoncli's path (soxr) or torchaudio's, for comparison",
    )
    parser.add_argument("--whole", action="store_true", help="also time whole `anoncli anonymize` processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as failed")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    rows = []
    print(f"resample 1 s at RATE -> {WORKING_RATE} Hz -> RATE ({args.backend}), one process per rate")
    print(f"{'rate':>8} {'wall s':>8} {'extra MB':>9}  within target")
    for rate in args.rates:
        row = measure_resample(rate, args.backend, args.timeout)
        rows.append({"kind": "resample", "backend": args.backend, **row})
        ok = row.get("wall_s") is not None and row["wall_s"] < TARGET_S and row["extra_mb"] < TARGET_MB
        shown = (
            f"{row['wall_s']:8.3f} {row['extra_mb']:9.1f}" if row.get("wall_s") is not None else f"{'-':>8} {'-':>9}"
        )
        print(f"{rate:>8} {shown}  {'yes' if ok else 'NO ' + row.get('error', '')}")

    if args.whole:
        with tempfile.TemporaryDirectory(prefix="anoncli-odd-rates-") as folder:
            work = Path(folder)
            base = measure_whole(WORKING_RATE, work, args.timeout)
            print(
                f"\nwhole `anoncli anonymize` on one 1-second file (16 kHz: {base['wall_s']:.2f} s, "
                f"{base['peak_mb']:.0f} MB peak)"
            )
            print(f"{'rate':>8} {'wall s':>8} {'peak MB':>8} {'extra s':>8} {'extra MB':>9}  within target")
            for rate in args.rates:
                row = measure_whole(rate, work, args.timeout)
                if row.get("wall_s") is None or row.get("exit"):
                    print(f"{rate:>8} failed: {row.get('error')}")
                    rows.append({"kind": "whole", **row})
                    continue
                extra_s, extra_mb = row["wall_s"] - base["wall_s"], row["peak_mb"] - base["peak_mb"]
                ok = row["wall_s"] < TARGET_S + base["wall_s"] and extra_mb < TARGET_MB
                print(
                    f"{rate:>8} {row['wall_s']:8.2f} {row['peak_mb']:8.0f} {extra_s:8.2f} {extra_mb:9.1f}  "
                    f"{'yes' if ok else 'NO'}"
                )
                rows.append({"kind": "whole", "extra_s": extra_s, "extra_mb": extra_mb, **row})
    if args.json:
        args.json.write_text(
            json.dumps({"target": {"wall_s": TARGET_S, "extra_mb": TARGET_MB}, "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
