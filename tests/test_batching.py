"""Duration-bucketed batches, the GPU pipeline executor and the prefetching loader (all on CPU)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_audio import make_corpus

from anoncli.corpus.utterance import Utterance
from anoncli.errors import AnoncliError
from anoncli.jobs.batching import duration_batches, durations, header_duration, make_batches
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.jobs.worker import preload_method
from anoncli.manifest.reader import read_manifest
from anoncli.parallel import make_executor
from anoncli.parallel.prefetch import PipelinedExecutor, Prefetcher


def _utt(i: int, path: Path | None = None) -> Utterance:
    path = path or Path(f"/nonexistent/u{i:03d}.wav")
    return Utterance(utt_id=f"u{i:03d}", path=path, rel_path=path.name, labels={})


def _wav_corpus(root: Path, lengths: list[float], rate: int = 8000) -> list[Utterance]:
    root.mkdir(parents=True, exist_ok=True)
    utts = []
    for i, seconds in enumerate(lengths):
        path = root / f"u{i:03d}.wav"
        sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)
        utts.append(_utt(i, path))
    return utts


def test_durations_come_from_headers_and_unknown_is_zero(tmp_path):
    utts = _wav_corpus(tmp_path, [0.5, 2.0, 1.25])
    assert durations(utts) == pytest.approx([0.5, 2.0, 1.25])
    (tmp_path / "bad.wav").write_text("not audio")
    assert header_duration(_utt(9, tmp_path / "bad.wav")) == 0.0
    assert header_duration(_utt(10)) == 0.0
    many = utts * 30  # the threaded path gives the same answer in the same order
    assert durations(many) == pytest.approx([0.5, 2.0, 1.25] * 30)


def test_buckets_respect_the_cap_hold_everything_once_and_go_longest_first():
    rng = np.random.default_rng(3)
    lengths = list(rng.uniform(0.2, 6.0, size=200)) + [25.0]  # one file longer than the cap
    utts = [_utt(i) for i in range(len(lengths))]
    by_id = {u.utt_id: s for u, s in zip(utts, lengths)}
    batches = duration_batches(utts, 20.0, lengths)
    ids = [u.utt_id for batch in batches for u in batch]
    assert sorted(ids) == sorted(by_id) and len(ids) == len(set(ids))
    totals = [sum(by_id[u.utt_id] for u in batch) for batch in batches]
    assert batches[0] == [utts[-1]] and totals[0] == 25.0  # alone, and first
    assert all(total <= 20.0 for total in totals[1:])
    # greedy packing: every batch but the last could not take the next utterance
    flat = [by_id[i] for i in ids]
    position = 0
    for batch, total in zip(batches[:-1], totals[:-1]):
        position += len(batch)
        assert total + flat[position] > 20.0
    # within a batch lengths are similar (sorted), and the order is reproducible
    assert all(by_id[b[0].utt_id] >= by_id[b[-1].utt_id] for b in batches)
    assert duration_batches(list(reversed(utts)), 20.0, list(reversed(lengths))) == batches
    # far fewer batches than a fixed count would give for the same padding budget
    assert len(batches) < len(utts) / 4


def test_make_batches_defaults_to_fixed_counts_and_rejects_bad_caps():
    utts = [_utt(i) for i in range(10)]
    assert [len(b) for b in make_batches(utts, 4)] == [4, 4, 2]
    with pytest.raises(AnoncliError, match="max-batch-seconds"):
        duration_batches(utts, 0.0, [1.0] * 10)


def test_engine_with_a_seconds_cap_matches_the_fixed_count_run(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=4, duration_s=0.3)
    sf.write(corpus / "spk_a" / "long.wav", np.zeros(16000 * 2, dtype=np.float32) + 0.05, 16000)
    base = {"corpus": corpus, "method": "identity", "progress": False}
    fixed = run_anonymize(AnonymizeConfig(out=tmp_path / "fixed", **base))
    capped = run_anonymize(AnonymizeConfig(out=tmp_path / "capped", max_batch_seconds=1.0, jobs=2, **base))
    assert fixed.ok == capped.ok == 13 and capped.failed == 0
    rows = read_manifest(tmp_path / "capped").to_pylist()
    assert len({r["utt_id"] for r in rows}) == len(rows) == 13
    for rel in ("spk_a/long.wav", "spk_b/spk_b_1.wav"):
        assert (tmp_path / "fixed" / rel).read_bytes() == (tmp_path / "capped" / rel).read_bytes()


def test_pipelined_executor_overlaps_loading_with_serialised_compute():
    """Each task loads (sleep) then computes holding a lock, as on one GPU: loads hide behind compute."""
    device = threading.Lock()
    load_s, compute_s, tasks = 0.06, 0.06, 10

    def task(i):
        time.sleep(load_s)
        with device:
            time.sleep(compute_s)
        return i

    started = time.perf_counter()
    with PipelinedExecutor(depth=3) as executor:
        results = sorted(f.result() for f in [executor.submit(task, i) for i in range(tasks)])
    pipelined = time.perf_counter() - started
    assert results == list(range(tasks))
    serial = tasks * (load_s + compute_s)
    assert pipelined < 0.75 * serial, (pipelined, serial)


def test_pipelined_executor_runs_real_batches_like_the_inline_path(tmp_path, monkeypatch):
    """process_batch on pipeline threads (one shared method, preloaded) writes what the inline run writes."""
    corpus = make_corpus(tmp_path / "corpus", per_speaker=4, duration_s=0.3)
    inline = run_anonymize(
        AnonymizeConfig(corpus=corpus, out=tmp_path / "inline", method="identity", progress=False, batch_size=3)
    )
    assert inline.ok == 12
    used = []

    def pipelined_factory(backend, jobs, device, scheduler, preload=None):
        used.append(PipelinedExecutor(depth=3, preload=preload))
        return used[-1]

    # what a single CUDA job gets; the engine looks the factory up when it runs
    monkeypatch.setattr("anoncli.parallel.make_executor", pipelined_factory)
    piped = run_anonymize(
        AnonymizeConfig(corpus=corpus, out=tmp_path / "piped", method="identity", progress=False, batch_size=3, jobs=2)
    )
    assert used and piped.ok == 12
    for rel in ("spk_a/spk_a_0.wav", "spk_c/spk_c_3.wav"):
        assert (tmp_path / "inline" / rel).read_bytes() == (tmp_path / "piped" / rel).read_bytes()
    assert len(set(read_manifest(tmp_path / "piped").column("utt_id").to_pylist())) == 12


def test_factory_picks_the_backend_and_refuses_bad_combinations():
    assert isinstance(make_executor("local", 1, "cuda"), PipelinedExecutor)
    with make_executor("local", 2, "cpu") as executor:
        assert executor.submit(pow, 2, 5).result() == 32
    with pytest.raises(AnoncliError, match="--backend"):
        make_executor("spark", 2, "cpu")
    with pytest.raises(AnoncliError, match="needs --backend dask"):
        make_executor("local", 2, "cpu", scheduler="tcp://127.0.0.1:8786")
    assert callable(preload_method)


def test_leaving_a_local_pool_on_error_drops_the_queued_batches():
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with make_executor("local", 2, "cpu") as executor:
            futures = [executor.submit(time.sleep, 0.5) for _ in range(20)]
            raise KeyboardInterrupt
    # 20 half-second tasks on 2 workers would take 5 s; only the running ones finish
    assert time.perf_counter() - started < 3.0
    assert sum(f.cancelled() for f in futures) >= 15


def test_prefetcher_keeps_order_bounds_lookahead_and_raises_in_place():
    loaded: list[int] = []
    consumed: list[int] = []

    def load(i):
        loaded.append(i)
        if i == 7:
            raise ValueError("bad item 7")
        return i * i

    items = Prefetcher(range(10), load, depth=2, threads=2)
    with pytest.raises(ValueError, match="bad item 7"):
        for i, value in items:
            assert value == i * i
            consumed.append(i)
            # never more than depth items loaded ahead of what was consumed
            assert max(loaded) <= i + 2
    assert consumed == list(range(7))
