"""Scale-out benchmark, in one run: (a) 1 vs 2 local workers, (b) Dask vs the plain local run, (c) 300 vs 1000 vs 3000 files.

    python benchmarks/scaling.py [--emodb ../shared/corpora/emodb-dev] [--fsdd ../shared/corpora/fsdd] \\
        [--method mcadams] [--repeats 3] [--device cpu] [--json results.json]

Every measurement runs in a fresh child process (so no cache or memory carries
over) and times `run_anonymize` end to end: corpus walk, plan, decode,
resample, anonymize, encode, manifest merge; the interpreter start and imports
are excluded. Peak memory is the child's own maximum RSS (the driver) and the
largest of its worker processes. Configurations are interleaved and repeated,
and the median is reported, because the machine is shared: the load average
before and after is printed with the results.

Dask is measured twice: `dask-local` starts a LocalCluster inside the run
(startup included), `dask-existing` submits to a cluster started beforehand
(startup excluded, as with a real cluster).

The 300- and 1000-file corpora are every 10th and every 3rd file of FSDD, copied into a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --- child: one measured run ---------------------------------------------------------------------


def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from anoncli.jobs.engine import AnonymizeConfig, run_anonymize

    config = AnonymizeConfig(
        corpus=Path(spec["corpus"]),
        out=Path(spec["out"]),
        method=spec["method"],
        jobs=spec["jobs"],
        backend=spec["backend"],
        scheduler=spec.get("scheduler"),
        batch_size=spec["batch_size"],
        max_batch_seconds=spec.get("max_batch_seconds"),
        device=spec["device"],
        progress=False,
    )
    sys.path.insert(0, str(HERE))
    from gpu_monitor import GpuMonitor

    cpu0 = os.times()
    started = time.perf_counter()
    with GpuMonitor() as gpu:
        summary = run_anonymize(config)
    wall = time.perf_counter() - started
    cpu1 = os.times()
    cpu_s = sum(cpu1[i] - cpu0[i] for i in range(4))  # user+sys of this process and its waited-for children
    return {
        "files": summary.ok + summary.failed,
        "failed": summary.failed,
        "audio_s": summary.audio_s,
        "wall_s": wall,
        "cpu_s": cpu_s,
        "xrt": summary.audio_s / wall,
        "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "gpu": gpu.summary(),
    }


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"child failed ({spec}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- parent ---------------------------------------------------------------------------------------


def subset_corpus(source: Path, target: Path, every: int) -> Path:
    """Every `every`-th row of source/metadata.csv, files copied under target (links would point outside it)."""
    with open(source / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = sorted(rows, key=lambda r: r["path"])[::every]
    for row in rows:
        copy = target / row["path"]
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / row["path"], copy)
    with open(target / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


class ExistingCluster:
    """A LocalCluster started before the measured runs, as a stand-in for a cluster that already runs."""

    def __init__(self, workers: int):
        import logging

        import dask
        from distributed import LocalCluster

        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
        self.address = self.cluster.scheduler_address
        from distributed import Client

        self.client = Client(self.cluster)

    def worker_cpu_s(self) -> float:
        """user+sys seconds spent so far by the cluster's worker processes (not children of the measured run)."""
        times = self.client.run(os.times)
        return sum(t[0] + t[1] for t in times.values())

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emodb", type=Path, default=Path("../shared/corpora/emodb-dev"))
    parser.add_argument("--fsdd", type=Path, default=Path("../shared/corpora/fsdd"))
    parser.add_argument("--method", default="mcadams")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Files per batch (default: anonymize's own choice, from the corpus's total duration).",
    )
    parser.add_argument(
        "--max-batch-seconds",
        type=float,
        default=None,
        help="Duration-bucketed batches for every configuration (default: --batch-size files).",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="Also write all measurements here.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    n = args.workers
    work = Path(tempfile.mkdtemp(prefix="anoncli-scaling-"))
    fsdd300 = subset_corpus(args.fsdd, work / "fsdd300", every=10)
    corpora = {
        "emodb-dev": args.emodb,
        "fsdd-3000": args.fsdd,
        "fsdd-300": fsdd300,
        "fsdd-1000": subset_corpus(args.fsdd, work / "fsdd1000", every=3),
    }
    cases = [  # (name, corpus, jobs, backend, uses the pre-started cluster)
        ("local-1", "emodb-dev", 1, "local", False),
        (f"local-{n}", "emodb-dev", n, "local", False),
        (f"dask-local-{n}", "emodb-dev", n, "dask", False),
        (f"dask-existing-{n}", "emodb-dev", n, "dask", True),
        ("local-1", "fsdd-3000", 1, "local", False),
        (f"local-{n}", "fsdd-3000", n, "local", False),
        (f"dask-local-{n}", "fsdd-3000", n, "dask", False),
        (f"dask-existing-{n}", "fsdd-3000", n, "dask", True),
        (f"local-{n}", "fsdd-300", n, "local", False),
        (f"local-{n}", "fsdd-1000", n, "local", False),
    ]
    print(f"machine: {os.cpu_count()} CPUs, load average before: {load_average()}", file=sys.stderr)
    existing = ExistingCluster(n)
    results: dict[tuple[str, str], list[dict]] = {}
    counter = 0
    try:
        base = {
            "method": args.method,
            "batch_size": args.batch_size,
            "device": args.device,
            "max_batch_seconds": args.max_batch_seconds,
        }
        # warm the existing cluster's workers (imports, method) once, unmeasured
        run_child(
            {
                **base,
                "corpus": str(fsdd300),
                "out": str(work / "warm"),
                "jobs": n,
                "backend": "dask",
                "scheduler": existing.address,
            }
        )
        for repeat in range(args.repeats):
            for name, corpus, jobs, backend, on_existing in cases:
                counter += 1
                spec = {
                    **base,
                    "corpus": str(corpora[corpus]),
                    "out": str(work / f"out-{counter}"),
                    "jobs": jobs,
                    "backend": backend,
                    "scheduler": existing.address if on_existing else None,
                }
                cluster_cpu = existing.worker_cpu_s() if on_existing else 0.0
                result = run_child(spec)
                if on_existing:
                    result["cpu_s"] += existing.worker_cpu_s() - cluster_cpu
                results.setdefault((corpus, name), []).append(result)
                print(
                    f"[{repeat + 1}/{args.repeats}] {corpus:10s} {name:16s} {result['wall_s']:7.2f} s "
                    f"{result['xrt']:6.0f}x RT  cpu {result['cpu_s']:6.1f} s  load {load_average()}",
                    file=sys.stderr,
                )
    finally:
        existing.close()
        shutil.rmtree(work, ignore_errors=True)  # several GB of outputs after a full run
    print(f"load average after: {load_average()}", file=sys.stderr)
    report(results, n)
    if args.json:
        args.json.write_text(json.dumps({f"{c}/{k}": v for (c, k), v in results.items()}, indent=2))


def report(results: dict, n: int) -> None:
    def wall(corpus, name):
        return median([r["wall_s"] for r in results[(corpus, name)]])

    print(
        "| corpus | configuration | files | audio min | wall s (median) | runs | x real time | "
        "CPU s (median) | driver peak RSS MB | worker peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (corpus, name), runs in results.items():
        first = runs[0]
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
        print(
            f"| {corpus} | {name} | {first['files']} | {first['audio_s'] / 60:.1f} | {wall(corpus, name):.2f} | "
            f"{walls} | {first['audio_s'] / wall(corpus, name):.0f} | {median([r['cpu_s'] for r in runs]):.1f} | "
            f"{max(r['driver_rss_mb'] for r in runs):.0f} | {max(r['worker_rss_mb'] for r in runs):.0f} |"
        )
        gpu = [r["gpu"] for r in runs if r.get("gpu")]
        if gpu:
            print(f"|  | {gpu[-1]} |  |  |  |  |  |  |  |  |")
    print()
    for corpus in ("emodb-dev", "fsdd-3000"):
        speedup = wall(corpus, "local-1") / wall(corpus, f"local-{n}")
        print(f"{corpus}: {n} workers vs 1: {speedup:.2f}x throughput (target >= 1.7x)")
        for dask in (f"dask-local-{n}", f"dask-existing-{n}"):
            overhead = wall(corpus, dask) / wall(corpus, f"local-{n}") - 1
            print(f"{corpus}: {dask} vs local-{n}: {overhead * 100:+.0f} % wall time (target within 15 %)")
    # Linear time means a constant cost per extra file: compare it between 300->1000 and 1000->3000 files.
    sizes = [(results[(c, f"local-{n}")][0]["files"], c) for c in ("fsdd-300", "fsdd-1000", "fsdd-3000")]
    wall_at = {files: wall(c, f"local-{n}") for files, c in sizes}
    cpu_at = {files: median([r["cpu_s"] for r in results[(c, f"local-{n}")]]) for files, c in sizes}
    (f0, _), (f1, _), (f2, _) = sizes
    for label, at in (("wall", wall_at), ("CPU", cpu_at)):
        low = (at[f1] - at[f0]) / (f1 - f0) * 1000
        high = (at[f2] - at[f1]) / (f2 - f1) * 1000
        print(
            f"corpus size {f0} -> {f1} -> {f2} files: {label} s {at[f0]:.1f} -> {at[f1]:.1f} -> {at[f2]:.1f}; "
            f"extra {label} s per 1000 files: {low:.2f} ({f0}->{f1}), {high:.2f} ({f1}->{f2})"
        )
    for key in ("driver_rss_mb", "worker_rss_mb"):
        peaks = [max(r[key] for r in results[(c, f"local-{n}")]) for _f, c in sizes]
        print(f"{key.replace('_mb', '')} peak MB at {f0}/{f1}/{f2} files: " + " / ".join(f"{p:.0f}" for p in peaks))


if __name__ == "__main__":
    main()
