"""McAdams with its default per-utterance scores, as a whole process, next to the VoicePrivacy reference loop.

    python benchmarks/scores_vs_reference.py [CORPUS] [--repeats 3] [--jobs 2] [--max-load 1.5]
        [--wait-s 600] [--json FILE]

CORPUS defaults to ../shared/corpora/emodb-dev. Every run is a fresh child
process timed from its start to its exit (interpreter start, imports, corpus
walk, anonymization, scores, manifest and run.json included), on the same files
with the same number of worker processes:

* reference: `benchmarks/reference_mcadams.py CORPUS OUT --jobs N` (a per-frame
  Python loop in a multiprocessing pool; it scores nothing);
* scores, cold cache: `anoncli anonymize CORPUS --out OUT --method mcadams
  --jobs N` (scores on, the default) with an empty `$ANONCLI_CACHE`, so every
  original is embedded and F0-tracked (a first run on a corpus);
* scores, warm cache: the same with a cache a previous run filled (a rerun, or a
  second method on the same corpus: only the outputs are described);
* no scores: the same with `--no-score`, for the cost of the scores themselves.

One untimed run of each side first fills numba's compile caches (both sides
use numba) and the warm cache. Then the sides run in turn, `--repeats` rounds,
alternating, and the medians are reported with the CPU seconds of each child
process tree (getrusage) and the 1-minute load average at the start of each
run. Before the first round the script waits (up to --wait-s) for the load
average to drop below --max-load, and says whether it did.
"""

from __future__ import annotations

import argparse
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
ROOT = HERE.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "emodb-dev"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def commands(corpus: Path, work: Path, jobs: int) -> dict[str, tuple[list[str], Path]]:
    """side -> (command line, its output folder)."""

    def anoncli(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "anoncli",
            "anonymize",
            str(corpus),
            "--out",
            str(out),
            "--method",
            "mcadams",
            "--jobs",
            str(jobs),
            "--no-progress",
            "--overwrite",
        ]

    return {
        "reference": (
            [
                sys.executable,
                str(HERE / "reference_mcadams.py"),
                str(corpus),
                str(work / "reference"),
                "--jobs",
                str(jobs),
            ],
            work / "reference",
        ),
        "scores, cold cache": (anoncli(work / "cold"), work / "cold"),
        "scores, warm cache": (anoncli(work / "warm"), work / "warm"),
        "no scores": ([*anoncli(work / "plain"), "--no-score"], work / "plain"),
    }


def run_once(name: str, command: list[str], out: Path, cache_root: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if name == "scores, cold cache":
        cold = cache_root / f"cache-cold-{time.time_ns()}"
        env["ANONCLI_CACHE"] = str(cold)
    else:
        env["ANONCLI_CACHE"] = str(cache_root / "cache-warm")
    load = os.getloadavg()[0]
    cpu0 = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    if name == "scores, cold cache":
        shutil.rmtree(cold, ignore_errors=True)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "load_1min": round(load, 2)}


def wait_for_quiet(max_load: float, wait_s: float) -> dict:
    started = time.time()
    while os.getloadavg()[0] >= max_load and time.time() - started < wait_s:
        time.sleep(15)
    load = os.getloadavg()[0]
    return {"load_1min": round(load, 2), "waited_s": round(time.time() - started), "quiet": load < max_load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?", default=DEFAULT_CORPUS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--wait-s", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    corpus = args.corpus.resolve()
    work = Path(tempfile.mkdtemp(prefix="scores-bench-"))
    try:
        sides = commands(corpus, work, args.jobs)
        for name, (command, out) in sides.items():  # untimed: numba caches, the warm score cache
            run_once(name, command, out, work)
        quiet = wait_for_quiet(args.max_load, args.wait_s)
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, (command, out) in sides.items():
                runs[name].append(run_once(name, command, out, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        name: {key: round(statistics.median(r[key] for r in rs), 3) for key in ("wall_s", "cpu_s", "load_1min")}
        for name, rs in runs.items()
    }
    reference = medians["reference"]["wall_s"]
    print(
        f"corpus {corpus}, {args.jobs} jobs, {args.repeats} alternating rounds; before the rounds: "
        f"load {quiet['load_1min']} after waiting {quiet['waited_s']} s ({'quiet' if quiet['quiet'] else 'NOT quiet'})"
    )
    print(f"{'side':22s} {'median wall s':>14s} {'median CPU s':>13s} {'x reference speed':>18s}  loads at start")
    for name, stats in medians.items():
        loads = ", ".join(str(r["load_1min"]) for r in runs[name])
        print(f"{name:22s} {stats['wall_s']:14.2f} {stats['cpu_s']:13.2f} {reference / stats['wall_s']:18.2f}  {loads}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "corpus": str(corpus),
                    "jobs": args.jobs,
                    "repeats": args.repeats,
                    "before_rounds": quiet,
                    "runs": runs,
                    "medians": medians,
                    "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
