"""Throughput of `anoncli anonymize` (McAdams) next to the VoicePrivacy-style reference loop.

    python benchmarks/anonymize_throughput.py CORPUS [--jobs N] [--no-reference] [--limit K]
        [--device cpu|cuda] [--method mcadams] [--no-warmup] [--json FILE]
    python benchmarks/anonymize_throughput.py CORPUS --method-only compiled,torch [--device cuda]

Both sides run on the same files (the first K in sorted order with --limit),
each in its own fresh Python process so that peak memory is measured
separately: anoncli end to end in-process through the job engine (decode,
resample, anonymize, encode, Parquet manifest), the reference with a
`multiprocessing.Pool` of the same size (`benchmarks/reference_mcadams.py`).
Before timing, each side runs once on two files, so numba's compile caches
(anoncli's kernel, librosa's LPC) are filled and only warm runs are compared.

Prints audio hours, wall time of the run (anoncli: from the engine call on,
after `import torch`; reference: from the pool's start), x real time, wall
time of the whole child process (interpreter start and imports included), CPU
seconds of the process tree, and peak RSS (getrusage: the driver process, and
the largest worker process) per side, and the ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reference_mcadams import list_audio, run_reference  # noqa: E402


def limited_corpus(corpus: Path, rel_paths: list[str], root: Path) -> Path:
    """A corpus folder with copies of the chosen files and their metadata rows.

    Copies, not symlinks: the corpus reader refuses label rows whose files
    resolve outside the corpus folder.
    """
    for rel in rel_paths:
        copy = root / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / rel, copy)
    metadata = corpus / "metadata.csv"
    if metadata.exists():
        chosen = set(rel_paths)
        with open(metadata, newline="") as src, open(root / "metadata.csv", "w", newline="") as dst:
            reader = csv.DictReader(src)
            key = "file_name" if "file_name" in (reader.fieldnames or []) else "path"
            writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
            writer.writeheader()
            writer.writerows(row for row in reader if row.get(key) in chosen)
    return root


def usage() -> dict[str, float]:
    """Peak RSS of this process and of its largest (reaped) worker; CPU seconds of both together.

    CPU seconds do not depend on what else runs on the machine, so they
    compare the two sides fairly when other jobs share the cores.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return {"rss_driver_mb": own.ru_maxrss / 1024, "rss_worker_mb": children.ru_maxrss / 1024, "cpu_s": cpu}


def side_anoncli(corpus: Path, out: Path, jobs: int, device: str, method: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from anoncli.jobs.engine import AnonymizeConfig, run_anonymize

    started = time.perf_counter()
    summary = run_anonymize(
        AnonymizeConfig(corpus=corpus, out=out, method=method, jobs=jobs, device=device, progress=False, overwrite=True)
    )
    wall = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"anoncli: {summary.failed} files failed: {summary.errors[:3]}")
    return {"files": summary.ok, "audio_s": summary.audio_s, "wall_s": wall}


def side_reference(corpus: Path, out: Path, jobs: int) -> dict:
    return run_reference(corpus, out, list_audio(corpus), jobs)


def method_only(corpus: Path, rel_paths: list[str], device: str, backends: list[str], batch_size: int = 16) -> None:
    """Time McAdams.process alone (audio decoded and resampled beforehand), one process, one thread."""
    import torch

    torch.set_num_threads(1)
    from anoncli.audio import read_audio, resample
    from anoncli.methods import MethodOptions, create_method

    waves = []
    for rel in rel_paths:
        audio = read_audio(corpus / rel)
        waves.append(resample(torch.from_numpy(audio.samples), audio.sample_rate, 16000).to(device))
    audio_s = sum(w.shape[0] for w in waves) / 16000
    frames = sum(w.shape[0] // 160 + 2 for w in waves)
    for backend in backends:
        method = create_method("mcadams", MethodOptions(device=device, extra={"backend": backend, "alpha": "0.7"}))
        method.process(waves[:1], [{"alpha": 0.7}])  # warm-up (compilation, CUDA context)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started_cpu, started = time.process_time(), time.perf_counter()
        for first in range(0, len(waves), batch_size):
            batch = waves[first : first + batch_size]
            method.process(batch, [{"alpha": 0.7}] * len(batch))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        print(
            f"method only, backend {method.backend} on {device}: {audio_s:.1f} s of audio ({frames} frames) in "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU -> {audio_s / wall:.0f}x real time, "
            f"{cpu / frames * 1e6:.1f} us CPU per frame"
        )


def run_side(side: str, corpus: Path, out: Path, args) -> dict:
    """One side in a fresh interpreter; returns its JSON line."""
    command = [
        sys.executable,
        __file__,
        str(corpus),
        "--side",
        side,
        "--out",
        str(out),
        "--jobs",
        str(args.jobs),
        "--device",
        args.device,
        "--method",
        args.method,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{side} run failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - started
    return result


def report(rows: dict[str, dict]) -> str:
    lines = [
        f"{'':10} {'files':>6} {'audio h':>8} {'wall s':>8} {'x RT':>7} {'process s':>9} {'CPU s':>7} "
        f"{'audio s/CPU s':>13} {'RSS driver MB':>14} {'RSS worker MB':>14}"
    ]
    for name, r in rows.items():
        lines.append(
            f"{name:10} {r['files']:>6} {r['audio_s'] / 3600:>8.3f} {r['wall_s']:>8.2f} "
            f"{r['audio_s'] / r['wall_s']:>7.0f} {r['process_wall_s']:>9.2f} {r['cpu_s']:>7.2f} "
            f"{r['audio_s'] / r['cpu_s']:>13.0f} {r['rss_driver_mb']:>14.0f} {r['rss_worker_mb']:>14.0f}"
        )
    if "reference" in rows and "anoncli" in rows:
        ours, theirs = rows["anoncli"], rows["reference"]
        wall_ratio = theirs["wall_s"] / ours["wall_s"]
        process_ratio = theirs["process_wall_s"] / ours["process_wall_s"]
        cpu_ratio = theirs["cpu_s"] / ours["cpu_s"]
        lines.append(
            f"anoncli / reference throughput: {wall_ratio:.1f}x (wall clock of the run), "
            f"{process_ratio:.1f}x (wall clock of the whole process: interpreter start and imports too), "
            f"{cpu_ratio:.1f}x (CPU time of the process trees, imports included)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first K files (sorted paths)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="mcadams")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--method-only",
        default=None,
        metavar="BACKENDS",
        help="time McAdams.process alone for these backends (e.g. compiled,torch) and exit",
    )
    parser.add_argument("--side", choices=["anoncli", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    corpus = args.corpus.resolve()

    if args.side:  # child process: run one side, print one JSON line
        if args.side == "anoncli":
            result = side_anoncli(corpus, args.out, args.jobs, args.device, args.method)
        else:
            result = side_reference(corpus, args.out, args.jobs)
        print(json.dumps({**result, **usage()}))
        return 0

    rel_paths = list_audio(corpus, args.limit)
    if not rel_paths:
        raise SystemExit(f"no audio files under {corpus}")
    if args.method_only:
        method_only(corpus, rel_paths, args.device, args.method_only.split(","))
        return 0
    sides = ["anoncli"] + ([] if args.no_reference else ["reference"])
    scratch = Path(tempfile.mkdtemp(prefix="anoncli-bench-"))
    try:
        if args.limit:
            corpus = limited_corpus(corpus, rel_paths, scratch / "corpus")
        if not args.no_warmup:
            warm = limited_corpus(corpus, list_audio(corpus)[:2], scratch / "warmup")
            for side in sides:
                run_side(side, warm, scratch / f"warm-{side}", args)
        rows = {}
        for side in sides:
            rows[side] = run_side(side, corpus, scratch / f"out-{side}", args)
            print(f"{side}: done in {rows[side]['wall_s']:.2f} s", file=sys.stderr)
        print(
            f"corpus: {args.corpus} ({len(rel_paths)} files), jobs: {args.jobs}, device: {args.device}, "
            f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}"
        )
        print(report(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
