"""The anonymize job on a real Dask cluster: a scheduler and two workers started here on 127.0.0.1.

One run goes through both workers (each builds the method once); another loses
a worker to SIGKILL right after it wrote a batch's manifest file but before it
reported the batch, so the scheduler reruns that batch on the other worker: the
manifest must still hold every utterance exactly once, with readable outputs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed  # a dependency of anoncli (dask[distributed]); a missing install must fail, not skip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from synth_audio import make_corpus

from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.manifest.layout import pending_dir
from anoncli.manifest.reader import read_manifest
from anoncli.manifest.schema import manifest_schema
from anoncli.manifest.writer import finalize_part, write_batch

TESTS_DIR = Path(__file__).resolve().parent
DASK_CLI = str(Path(sys.executable).with_name("dask"))
START_TIMEOUT_S = 45
RUN_TIMEOUT_S = 60
# Seconds a task lingers after writing its manifest batch file, so the test can kill its worker in that window.
LINGER_S = 0.4


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.scheduler_file = root / "scheduler.json"
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            # the workers import this module for the instrumentation below
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        }
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []

    def _spawn(self, *args: str) -> subprocess.Popen:
        log = open(self.root / f"proc-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(
            [DASK_CLI, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, workers: int = 2) -> str:
        self._spawn(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.scheduler_file.exists(), self.logs()
        for _ in range(workers):
            self.workers.append(
                self._spawn(
                    "worker",
                    "--scheduler-file",
                    str(self.scheduler_file),
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--death-timeout",
                    "60",
                )
            )
        return self.address

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.root.glob("proc-*.log")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3  # a graceful close takes well under a second; do not wait for stragglers
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    cluster = Cluster(root)
    try:
        address = cluster.start(workers=2)
        assert address.startswith("tcp://127.0.0.1:")
        with distributed.Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            client.run(_install_instrumentation)
        yield cluster
    finally:
        cluster.stop()


# --- instrumentation installed inside the worker processes (they import this module) -------------

_COUNTS = {"methods_built": 0, "batches": 0}


def _install_instrumentation() -> None:
    from anoncli.jobs import worker

    if getattr(worker, "_test_instrumented", False):
        return
    create, process = worker.create_method, worker.process_batch

    def counting_create(*args, **kwargs):
        _COUNTS["methods_built"] += 1
        return create(*args, **kwargs)

    def lingering_process(spec, batch):
        result = process(spec, batch)
        _COUNTS["batches"] += 1
        if Path(spec.out, ".LINGER").exists():
            time.sleep(LINGER_S)  # the batch file is written; the task has not reported yet
        return result

    worker.create_method = counting_create
    # Tasks reference process_batch by module and name, so workers resolve to this wrapper.
    worker.process_batch = lingering_process
    worker._test_instrumented = True


def _counts() -> dict:
    return dict(_COUNTS)


# --- helpers ----------------------------------------------------------------------------------------


def _config(corpus: Path, out: Path, scheduler: str) -> AnonymizeConfig:
    return AnonymizeConfig(
        corpus=corpus,
        out=out,
        method="identity",
        backend="dask",
        scheduler=scheduler,
        jobs=2,
        batch_size=2,
        output_sample_rate=8000,
        progress=False,
    )


def _run_in_thread(config: AnonymizeConfig) -> dict:
    outcome: dict = {}

    def target():
        try:
            outcome["summary"] = run_anonymize(config)
        except BaseException as err:  # reported by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT_S)
    assert not thread.is_alive(), "the Dask run did not finish in time"
    if "error" in outcome:
        raise outcome["error"]
    return outcome


def _check_complete(out: Path, corpus_files: int) -> list[str]:
    ids = read_manifest(out).column("utt_id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicated manifest rows"
    assert len(ids) == corpus_files, "missing manifest rows"
    assert not list(out.glob("manifest/.pending/*/*.parquet"))
    rows = read_manifest(out).to_pylist()
    assert {r["status"] for r in rows} == {"ok"}
    for row in rows:
        data, rate = sf.read(out / row["output_path"])
        assert rate == 8000 and len(data) > 0
    return ids


# --- tests --------------------------------------------------------------------------------------------


def test_a_run_through_two_workers_builds_the_method_once_per_worker(cluster, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=6, duration_s=0.3)
    out = tmp_path / "out"
    summary = _run_in_thread(_config(corpus, out, cluster.address))["summary"]
    assert summary.ok == 18 and summary.failed == 0
    _check_complete(out, 18)
    with distributed.Client(cluster.address, timeout=START_TIMEOUT_S) as client:
        counts = client.run(_counts)
    assert len(counts) == 2
    assert sum(c["batches"] for c in counts.values()) == 9
    for worker_counts in counts.values():
        # built once by the preload plugin, reused by every task on that worker
        assert worker_counts["methods_built"] == 1, counts


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=10, duration_s=0.3)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".LINGER").touch()  # tasks linger after writing their batch file (see _install_instrumentation)
    victim = cluster.workers[0]
    assert victim.poll() is None
    killed: dict = {}

    def kill_after_first_batch_file():
        folder = pending_dir(out, 0, 1)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            mine = sorted(folder.glob(f"batch-*-{victim.pid}-*.parquet")) if folder.is_dir() else []
            if mine:
                # kill first: reading the file can take longer than the linger (the first Parquet read in this
                # process imports pyarrow's dataset layer and pandas), and the task must not have reported yet
                killed["at_ns"] = time.time_ns()
                os.kill(victim.pid, signal.SIGKILL)
                killed["ids"] = pq.read_table(mine[0], columns=["utt_id"]).column(0).to_pylist()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_after_first_batch_file, daemon=True)
    watcher.start()
    summary = _run_in_thread(_config(corpus, out, cluster.address))["summary"]
    watcher.join(5)
    assert killed, "the victim never wrote a batch; the test proves nothing"
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert summary.ok == 30 and summary.failed == 0
    ids = _check_complete(out, 30)
    # The victim's batch was written, then redone by the survivor; the manifest keeps one row each.
    assert set(killed["ids"]) <= set(ids)
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    for utt in killed["ids"]:
        assert (out / rows[utt]["output_path"]).stat().st_mtime_ns >= killed["at_ns"] - 10_000_000
    assert not [p for p in out.rglob("*") if ".anoncli-tmp-" in p.name]


def test_finalize_keeps_one_row_when_a_batch_file_was_written_twice(tmp_path):
    """A worker that wrote its batch file and died before reporting: the rerun writes the same utt_ids again."""
    out = tmp_path / "out"
    schema = manifest_schema([])
    rows = [{"utt_id": f"u{i}", "status": "ok", "output_path": f"u{i}.wav"} for i in range(4)]
    write_batch(out, (0, 1), rows[:2], schema)
    write_batch(out, (0, 1), rows[:2], schema)  # the rerun of the same batch on another worker
    write_batch(out, (0, 1), rows[2:], schema)
    # before the merge, the reader already shows each utterance once
    assert sorted(read_manifest(out).column("utt_id").to_pylist()) == ["u0", "u1", "u2", "u3"]
    part = finalize_part(out, (0, 1), schema)
    assert sorted(pq.read_table(part).column("utt_id").to_pylist()) == ["u0", "u1", "u2", "u3"]
    # a second rerun written after the merge is dropped at the next merge as well
    write_batch(out, (0, 1), rows[1:3], schema)
    write_batch(out, (0, 1), rows[1:3], schema)
    finalize_part(out, (0, 1), schema)
    table = pq.read_table(part)
    assert sorted(table.column("utt_id").to_pylist()) == ["u0", "u1", "u2", "u3"]
    assert isinstance(table, pa.Table) and not list(out.glob("manifest/.pending/*/*.parquet"))


def test_bad_scheduler_address_is_a_one_line_error(monkeypatch):
    import socket

    from anoncli.errors import AnoncliError
    from anoncli.parallel.dask_executor import DaskExecutor

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr("anoncli.parallel.dask_executor.CONNECT_TIMEOUT_S", 2)
    with pytest.raises(AnoncliError, match="cannot connect"):
        with DaskExecutor(jobs=1, scheduler=f"tcp://127.0.0.1:{port}"):
            pass


def test_backend_dask_without_address_starts_a_local_cluster(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=3, duration_s=0.3)
    out = tmp_path / "out"
    config = AnonymizeConfig(
        corpus=corpus,
        out=out,
        method="identity",
        backend="dask",
        jobs=2,
        batch_size=2,
        output_sample_rate=8000,
        progress=False,
    )
    summary = _run_in_thread(config)["summary"]
    assert summary.ok == 9
    _check_complete(out, 9)
    assert json.loads((out / "run.json").read_text())["config"]["backend"] == "dask"
