"""A job killed with SIGKILL at any moment resumes to a complete, duplicate-free manifest."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from anoncli.manifest.reader import read_manifest

FILES = 120


def _corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(FILES):
        folder = root / f"s{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"u{i:03d}.wav", (0.1 * rng.standard_normal(24000)).astype(np.float32), 48000)
    return root


def _start(corpus: Path, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "anoncli",
        "anonymize",
        str(corpus),
        "--out",
        str(out),
        "--method",
        "identity",
        "--batch-size",
        "2",
        "--jobs",
        "1",
        "--sample-rate",
        "16000",
        "--no-progress",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_progress(out: Path, proc: subprocess.Popen, batches: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = out / "manifest" / ".pending"
    while time.monotonic() < deadline and proc.poll() is None:
        if pending.is_dir() and sum(1 for _ in pending.glob("*/*.parquet")) >= batches:
            return
        time.sleep(0.005)


def test_sigkill_then_resume_gives_each_file_exactly_once(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    for batches in (2, 12, 25):
        proc = _start(corpus, out)
        _wait_for_progress(out, proc, batches)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # whatever is under a final name is a complete, readable file
        for path in out.rglob("*.wav"):
            assert sf.info(path).frames == 8000, path
    killed_rows = read_manifest(out).num_rows if (out / "manifest").exists() else 0
    assert killed_rows < FILES, "the job finished before it could be killed; the test proves nothing"

    final = _start(corpus, out)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    ids = read_manifest(out).column("utt_id").to_pylist()
    assert len(ids) == len(set(ids)) == FILES
    assert not list((out / "manifest").glob(".pending/*/*.parquet"))
    outputs = sorted(out.rglob("*.wav"))
    assert len(outputs) == FILES
    assert not [p for p in out.rglob("*") if ".anoncli-tmp-" in p.name]
    for path in outputs:
        data, rate = sf.read(path)
        assert rate == 16000 and len(data) == 8000
