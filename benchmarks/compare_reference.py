"""Whole processes, side by side: anoncli's McAdams against the reference loop, 1 against 2 workers, memory, start-up.

Every measurement is one fresh child process, timed from fork to exit
(interpreter start, imports, corpus walk, writing and manifests included),
as a user pays it. The configurations of one comparison alternate (A, B, A,
B, ...) so that a change in the machine's load hits both sides alike, and
the medians are reported. CPU seconds and peak memory come from `wait4`:
user + system time of the process and every descendant it waited for, and
the largest resident set among them (forked workers share pages with their
parent, so this is the largest process, not a sum).

    python benchmarks/compare_reference.py --emodb ../shared/corpora/emodb-dev --fsdd ../shared/corpora/fsdd

Comparisons (each can be skipped, see --help):
- reference: anoncli (`--no-score`, `--jobs 2`) against `benchmarks/reference_mcadams.py` (2 processes) on
  each corpus; target anoncli >= 5x faster in wall time.
- jobs: `--jobs 2` against `--jobs 1` on fsdd; target >= 1.7x.
- memory: peak RSS of a run on the first 300 files of fsdd and on all of it; target <= 400 MB, flat.
- help: `anoncli --help`; target < 0.5 s.
- startup: `python -X importtime` of a one-file run: the packages it imports and what they cost.

Prints a markdown table per comparison and writes everything to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "benchmarks" / "reference_mcadams.py"


def measure(command: list[str], cwd: Path | None = None) -> dict:
    """Run `command` once; wall s, CPU s (process tree), peak RSS MB (largest process), load before, exit code."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {stderr[-2000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load_before": load,
    }


def anoncli_command(corpus: Path, out: Path, jobs: int, files_from: Path | None = None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "anoncli",
        "anonymize",
        str(corpus),
        "--out",
        str(out),
        "--method",
        "mcadams",
        "--no-score",
        "--no-progress",
        "--jobs",
        str(jobs),
        "--device",
        "cpu",
        "--overwrite",
    ]
    if files_from is not None:
        command += ["--files-from", str(files_from)]
    return command


def alternate(configs: dict[str, callable], repeats: int, scratch: Path) -> dict[str, dict]:
    """Run each configuration `repeats` times, interleaved; per configuration the runs and their medians."""
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for round_ in range(repeats):
        for name, make in configs.items():
            out = scratch / f"{name}-{round_}"
            shutil.rmtree(out, ignore_errors=True)
            runs[name].append(measure(make(out)))
            shutil.rmtree(out, ignore_errors=True)
            print(
                f"  {name} #{round_ + 1}: {runs[name][-1]['wall_s']:.2f} s wall, "
                f"{runs[name][-1]['cpu_s']:.2f} s CPU, {runs[name][-1]['peak_rss_mb']:.0f} MB, "
                f"load {runs[name][-1]['load_before']:.2f}",
                file=sys.stderr,
            )
    return {
        name: {
            "runs": items,
            **{
                key: statistics.median(r[key] for r in items)
                for key in ("wall_s", "cpu_s", "peak_rss_mb", "load_before")
            },
        }
        for name, items in runs.items()
    }


def warm_up(corpus: Path, scratch: Path) -> None:
    """One untimed run of each side on two files: numba's caches (both sides) and the page cache."""
    files = scratch / "warm.list"
    files.write_text("\n".join(sorted(_audio(corpus))[:2]) + "\n")
    measure(anoncli_command(corpus, scratch / "warm-a", 1, files))
    measure([sys.executable, str(REFERENCE), str(corpus), str(scratch / "warm-r"), "--limit", "2"])
    for name in ("warm-a", "warm-r"):
        shutil.rmtree(scratch / name, ignore_errors=True)


def _audio(corpus: Path) -> list[str]:
    return [str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg")]


def ratio_table(title: str, results: dict[str, dict], baseline: str, other: str) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| side | wall s (median) | runs | CPU s | peak RSS MB | load before |",
        "|---|---|---|---|---|---|",
    ]
    for name, item in results.items():
        runs = ", ".join(f"{r['wall_s']:.2f}" for r in item["runs"])
        lines.append(
            f"| {name} | {item['wall_s']:.2f} | {runs} | {item['cpu_s']:.2f} | {item['peak_rss_mb']:.0f} | "
            f"{item['load_before']:.2f} |"
        )
    lines += [
        "",
        f"**{other} is {results[baseline]['wall_s'] / results[other]['wall_s']:.2f}x faster than {baseline}** "
        f"(wall, medians); CPU time ratio {results[baseline]['cpu_s'] / results[other]['cpu_s']:.2f}x.",
        "",
    ]
    return lines


def startup_profile(scratch: Path, corpus: Path) -> dict:
    """`python -X importtime` of a one-file CPU McAdams run: total import time and the costliest packages
    (each module's own time, summed per top-level package)."""
    files = scratch / "one.list"
    files.write_text(sorted(_audio(corpus))[0] + "\n")
    out = scratch / "importtime"
    command = [sys.executable, "-X", "importtime", *anoncli_command(corpus, out, 1, files)[1:]]
    result = subprocess.run(command, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    packages: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:  # each module's own time, summed per top-level package
            top = match.group(4).split(".")[0]
            packages[top] = packages.get(top, 0) + int(match.group(1))
    ranked = sorted(packages.items(), key=lambda item: -item[1])
    return {
        "total_ms": round(sum(packages.values()) / 1000, 1),
        "top_ms": {name: round(us / 1000, 1) for name, us in ranked[:12]},
        "torch_imported": "torch" in packages,
    }


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emodb", type=Path, help="emodb-dev corpus folder")
    parser.add_argument("--fsdd", type=Path, help="fsdd corpus folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated: reference, jobs, memory, help, startup")
    parser.add_argument("--json", type=Path, default=None, help="where to write all figures (default: print only)")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    corpora = {name: path.resolve() for name, path in (("emodb-dev", args.emodb), ("fsdd", args.fsdd)) if path}
    report: dict = {"machine": machine(), "comparisons": {}}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="anoncli-bench-") as tmp:
        scratch = Path(tmp)
        for corpus in corpora.values():
            warm_up(corpus, scratch)
        if "reference" not in skip:
            for name, corpus in corpora.items():
                print(f"{name}: anoncli --jobs 2 vs reference (2 processes)", file=sys.stderr)
                results = alternate(
                    {
                        "reference": lambda out, c=corpus: [
                            sys.executable,
                            str(REFERENCE),
                            str(c),
                            str(out),
                            "--jobs",
                            "2",
                        ],
                        "anoncli": lambda out, c=corpus: anoncli_command(c, out, 2),
                    },
                    args.repeats,
                    scratch,
                )
                report["comparisons"][f"reference-{name}"] = results
                lines += ratio_table(
                    f"McAdams on {name}: anoncli (--jobs 2, --no-score) vs the reference loop (2 processes)",
                    results,
                    "reference",
                    "anoncli",
                )
        if "jobs" not in skip and "fsdd" in corpora:
            print("fsdd: --jobs 1 vs --jobs 2", file=sys.stderr)
            corpus = corpora["fsdd"]
            results = alternate(
                {
                    "jobs-1": lambda out: anoncli_command(corpus, out, 1),
                    "jobs-2": lambda out: anoncli_command(corpus, out, 2),
                },
                args.repeats,
                scratch,
            )
            report["comparisons"]["jobs-fsdd"] = results
            lines += ratio_table("fsdd: --jobs 2 vs --jobs 1 (--no-score)", results, "jobs-1", "jobs-2")
        if "memory" not in skip and "fsdd" in corpora:
            print("fsdd: peak memory, 300 vs all files", file=sys.stderr)
            corpus = corpora["fsdd"]
            first = scratch / "first300.list"
            first.write_text("\n".join(sorted(_audio(corpus))[:300]) + "\n")
            results = alternate(
                {
                    "300 files": lambda out: anoncli_command(corpus, out, 2, first),
                    "all files": lambda out: anoncli_command(corpus, out, 2),
                },
                args.repeats,
                scratch,
            )
            report["comparisons"]["memory-fsdd"] = results
            lines += [
                "### Peak memory, fsdd, --jobs 2 (largest process)",
                "",
                "| files | peak RSS MB (median) | runs | wall s |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {name} | {item['peak_rss_mb']:.0f} | "
                f"{', '.join(str(round(r['peak_rss_mb'])) for r in item['runs'])} | {item['wall_s']:.2f} |"
                for name, item in results.items()
            ] + [""]
        if "help" not in skip:
            runs = [measure([sys.executable, "-m", "anoncli", "--help"]) for _ in range(max(3, args.repeats))]
            report["comparisons"]["help"] = runs
            walls = ", ".join(format(r["wall_s"], ".3f") for r in runs)
            lines += [
                f"### `anoncli --help`: {statistics.median(r['wall_s'] for r in runs):.3f} s wall (median of "
                f"{len(runs)}: {walls})",
                "",
            ]
        if "startup" not in skip and corpora:
            profile = startup_profile(scratch, next(iter(corpora.values())))
            report["startup"] = profile
            lines += [
                f"### Start-up: imports of a one-file CPU McAdams run: {profile['total_ms']:.0f} ms "
                f"(torch imported: {profile['torch_imported']})",
                "",
                "| package | import ms (its own modules) |",
                "|---|---|",
            ]
            lines += [f"| {name} | {ms:.0f} |" for name, ms in profile["top_ms"].items()] + [""]
    report["load_after"] = os.getloadavg()[0]
    print(f"machine: {report['machine']}; load average after: {report['load_after']:.2f}\n")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
