"""A job stopped by SIGTERM (a scheduler's stop) stops cleanly and resumes; a killed job leaves no worker behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synth_audio import make_corpus

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("sig") / "corpus", per_speaker=60, duration_s=0.3)


def start(corpus: Path, out: Path) -> subprocess.Popen:
    """A 2-worker job of 180 one-file batches, started and seen writing its first row."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "anoncli",
            "anonymize",
            str(corpus),
            "--out",
            str(out),
            "--jobs",
            "2",
            "--batch-size",
            "1",
            "--no-score",
            "--no-progress",
            "--format",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().startswith("{"), process.stderr.read()
    return process


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_sigterm_stops_like_ctrl_c_with_exit_143_and_the_job_resumes(corpus, tmp_path):
    out = tmp_path / "out"
    process = start(corpus, out)
    process.send_signal(signal.SIGTERM)
    process.stdout.read()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 143, stderr
    assert "terminated (SIGTERM); rerun the same command to resume" in stderr and "Traceback" not in stderr
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "anoncli",
            "anonymize",
            str(corpus),
            "--out",
            str(out),
            "--no-score",
            "--no-progress",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert '"skipped": 0' not in rerun.stdout and '"exit_code": 0' in rerun.stdout


def test_workers_of_a_killed_job_end_with_it(corpus, tmp_path):
    process = start(corpus, tmp_path / "out")
    workers = children(process.pid)
    assert len(workers) == 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(w) for w in workers)
