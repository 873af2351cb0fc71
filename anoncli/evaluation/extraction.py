"""One pass over the (original, anonymized) pairs computing every per-utterance quantity.

Each file is decoded once, resampled to 16 kHz, and gives: its speaker
embedding (ASV backend), the attribute attackers' feature vector, its F0 track
and duration; each pair gives STOI, F0 r and LSD. What depends only on the
original audio is cached per corpus file (path, size, mtime) and backend, so
evaluating several anonymizations of one corpus pays for the original once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anoncli.atomic import atomic_path
from anoncli.errors import AudioError
from anoncli.scoring import signal_metrics
from anoncli.scoring.features import FEATURE_RATE, attribute_features, load_16k
from anoncli.scoring.original_cache import cache_root, warn_unwritable

CACHE_VERSION = "3"  # 2: F0 tracks from anoncli.dsp.pitch (cleaned); 3: DIO on a 4 kHz copy
CHUNK = 32


@dataclass
class SideArrays:
    """Per-utterance quantities of one side (original or anonymized), aligned with the pairs."""

    embeddings: np.ndarray | None  # (N, D) from the ASV backend, L2-normalised
    attacker_embeddings: np.ndarray | None  # (N, 256) resemblyzer, inside the attacker features
    features: np.ndarray | None  # (N, F) attribute attackers' input
    durations: np.ndarray  # (N,) seconds
    f0: list[np.ndarray] | None


@dataclass
class Extracted:
    """The extraction pass over N pairs: per-side arrays, signal scores per pair, the `ok` mask, errors, timings and NaN reasons."""

    original: SideArrays
    anonymized: SideArrays
    signal: dict[str, np.ndarray]  # stoi, f0_r, lsd_db, duration_ratio, level_change_db per pair
    ok: np.ndarray  # (N,) bool: both files decoded
    errors: list[str]
    timings: dict[str, float]  # seconds per stage: decode, embed, f0+features, signal
    notes: list[dict[str, str]]  # per pair: {"link.cosine" or "signal.<name>": why that score is NaN}
    # per pair: the anonymize run's link_cosine (resemblyzer) when its manifest had one, else NaN; None: no manifest scores
    manifest_link: np.ndarray | None = None
    reused: int = 0  # pairs whose signal scores came from the manifest
    # pair index -> (side, reason): "original" or "anonymized", the file that could not be decoded into finite audio
    unreadable: dict[int, tuple[str, str]] = field(default_factory=dict)


# Scores an `anonymize` manifest holds (anoncli.scoring.quick_scores) that evaluate reuses instead of recomputing.
REUSED_SIGNAL = ("stoi", "f0_r", "duration_ratio", "level_change_db")
# per-pair signal columns: the scores, and the lag (ms, positive: the output is later) STOI was measured at
SIGNAL_COLUMNS = ("stoi", "f0_r", "lsd_db", "duration_ratio", "level_change_db", "stoi_lag_ms")


def manifest_scores(pairing, anonymized: Path) -> list[dict | None]:
    """Per pair: {score: (value, reason or None)} for REUSED_SIGNAL and link_cosine from the anonymize manifest,
    or None where the run did not score the pair (--no-score, an older run without these columns)."""
    table = getattr(pairing, "manifest_table", None)
    names = (*REUSED_SIGNAL, "link_cosine")
    if table is None or any(c not in table.column_names for c in (*names, "score_notes", "output_path")):
        return [None] * len(pairing.pairs)
    rows = table.select(["output_path", "status", *names, "score_notes"]).to_pylist()
    by_output = {row["output_path"]: row for row in rows if row["status"] == "ok" and row["output_path"]}
    found: list[dict | None] = []
    for _, target in pairing.pairs:
        try:
            row = by_output.get(Path(target).relative_to(anonymized).as_posix())
        except ValueError:
            row = None
        if row is None or any(row[name] is None for name in REUSED_SIGNAL):
            found.append(None)
            continue
        reasons = dict(part.split(": ", 1) for part in (row["score_notes"] or "").split("; ") if ": " in part)
        found.append({name: (row[name], reasons.get(name)) for name in names if row[name] is not None})
    return found


def cache_dir() -> Path:
    """The evaluation cache folder: `<$ANONCLI_CACHE or $XDG_CACHE_HOME/anoncli or ~/.cache/anoncli>/evaluation`."""
    return cache_root() / "evaluation"


def file_key(path: Path) -> str:
    """A cache key for a file's identity: resolved path, size in bytes and mtime in ns. Raises OSError if it cannot be read."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


class KeyedFileCache:
    """Per-file values of the original side, keyed by `file_key`, kept in memory and in one file.

    Subclasses name the file (`path`) and give its format (`_read`, `_write`). The file
    is read once when the cache is built; `save` writes every entry atomically when
    anything changed. A file that cannot be read is only a lost speed-up: the cache starts empty;
    one that cannot be written (`lost` says what is then not cached) is a warning, as in `anonymize`.
    """

    lost = "nothing is cached for the next run"

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self.entries: dict = {}
        self.dirty = False
        if enabled and path.is_file():
            try:
                self.entries = self._read()
            except Exception:  # a corrupt cache is only a lost speed-up
                self.entries = {}

    def _read(self) -> dict:
        raise NotImplementedError

    def _write(self, handle) -> None:
        raise NotImplementedError

    def get(self, key: str | None):
        """The cached value for a file key, or None (no key, absent, or the cache is off)."""
        return self.entries.get(key) if (self.enabled and key is not None) else None

    def put(self, key: str | None, value) -> None:
        """Remember a file's value (nothing when the cache is off or the key is None)."""
        if self.enabled and key is not None:
            self.entries[key] = value
            self.dirty = True

    def save(self) -> None:
        """Write all entries atomically when anything changed; a file that cannot be written is a warning."""
        if not (self.enabled and self.dirty and self.entries):
            return
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
                self._write(handle)
        except OSError as err:
            warn_unwritable(self.path, err, self.lost)


class OriginalCache(KeyedFileCache):
    """npz of per-file original-side quantities, keyed by file identity and backend."""

    lost = "the originals' embeddings and F0 are not cached"

    def __init__(self, corpus_root: Path, backend_name: str, enabled: bool = True):
        tag = hashlib.sha1(f"{Path(corpus_root).resolve()}|{backend_name}|{CACHE_VERSION}".encode()).hexdigest()[:16]
        super().__init__(cache_dir() / f"original-{tag}.npz", enabled)

    def _read(self) -> dict:
        data = np.load(self.path, allow_pickle=False)
        keys = data["keys"].tolist()
        offsets = data["f0_offsets"]
        return {
            key: {
                "embedding": data["embeddings"][i],
                "attacker_embedding": data["attacker_embeddings"][i],
                "features": data["features"][i],
                "duration": float(data["durations"][i]),
                "f0": data["f0"][offsets[i] : offsets[i + 1]],
            }
            for i, key in enumerate(keys)
        }

    def _write(self, handle) -> None:
        keys = sorted(self.entries)
        f0s = [self.entries[k]["f0"] for k in keys]
        offsets = np.concatenate([[0], np.cumsum([len(f) for f in f0s])]).astype(np.int64)
        np.savez(
            handle,
            keys=np.array(keys),
            f0_offsets=offsets,
            f0=np.concatenate(f0s) if f0s else np.zeros(0),
            embeddings=np.stack([self.entries[k]["embedding"] for k in keys]),
            attacker_embeddings=np.stack([self.entries[k]["attacker_embedding"] for k in keys]),
            features=np.stack([self.entries[k]["features"] for k in keys]),
            durations=np.array([self.entries[k]["duration"] for k in keys]),
        )


def _describe(waves, durations, backend, attacker_backend, need_attr: bool, timings: dict) -> list[dict]:
    """Embeddings, F0, features and duration for a chunk of waves of one side."""
    t0 = time.time()
    embeddings = backend.embed(waves) if backend is not None else [None] * len(waves)
    if attacker_backend is backend:
        attacker = embeddings
    elif need_attr:
        attacker = attacker_backend.embed(waves)
    else:
        attacker = [np.zeros(256, np.float32)] * len(waves)
    t1 = time.time()
    timings["embed"] += t1 - t0
    entries = []
    for wave, duration, emb, att in zip(waves, durations, embeddings, attacker):
        f0 = signal_metrics.f0_track(wave, FEATURE_RATE)
        feats = attribute_features(wave, f0, att) if need_attr else np.zeros(0, np.float32)
        entries.append({"embedding": emb, "attacker_embedding": att, "features": feats, "duration": duration, "f0": f0})
    timings["f0_features"] += time.time() - t1
    return entries


def build_backends(asv_model: str | None, need_embed: bool, need_attr: bool):
    """(speaker-embedding backend, attacker-feature backend) for a run; either may be None."""
    from anoncli.scoring.embeddings import ResemblyzerBackend, load_backend

    backend = load_backend(asv_model) if need_embed else None
    attacker_backend = None
    if need_attr:
        attacker_backend = backend if isinstance(backend, ResemblyzerBackend) else ResemblyzerBackend()
    return backend, attacker_backend


@dataclass
class _ChunkResult:
    indices: list[int]
    original: dict[int, dict]  # entries computed here (not from the cache)
    anonymized: dict[int, dict]
    signal: dict[int, dict[str, float]]
    errors: list[str]
    timings: dict[str, float]
    notes: dict[int, dict[str, str]]
    unreadable: dict[int, tuple[str, str]] = field(default_factory=dict)


UNREADABLE = "audio"  # the notes key of a pair whose file could not be decoded


def _load_finite(path: Path) -> tuple[np.ndarray, float]:
    """`load_16k`, and an AudioError too when resampling left a sample that is not finite."""
    wave, duration = load_16k(path)
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: samples that are not finite after resampling to {FEATURE_RATE} Hz")
    return wave, duration


def _pair_signal(
    w_o: np.ndarray, d_o: float, w_a: np.ndarray, d_a: float, f0_o: np.ndarray, f0_a: np.ndarray
) -> tuple[dict[str, float], dict[str, str]]:
    """The signal scores of one decoded pair and the reasons for those that are NaN."""
    scores: dict[str, float] = signal_metrics.pair_scores(w_o, w_a, FEATURE_RATE, f0_o, f0_a)
    scores["lsd_db"] = signal_metrics.log_spectral_distance(w_o, w_a, FEATURE_RATE)
    scores["stoi_lag_ms"] = 1000 * getattr(scores["stoi"], "lag_s", float("nan"))
    scores["duration_ratio"] = signal_metrics.duration_ratio(d_o, d_a)  # from the file headers
    notes = {
        f"signal.{name}": value.note
        for name, value in scores.items()
        if isinstance(value, signal_metrics.Score) and value.note
    }
    return {name: float(value) for name, value in scores.items()}, notes


def _extract_chunk(
    chunk: list[tuple[int, Path, Path]],
    cached: dict[int, dict],
    backend,
    attacker_backend,
    need_signal: bool,
    need_attr: bool,
    known: dict[int, dict] | None = None,
) -> _ChunkResult:
    """Decode and describe one chunk of (index, original path, anonymized path).

    `known`: pair index -> the manifest's scores (`manifest_scores`); those
    pairs get their REUSED_SIGNAL scores from it and only the LSD is computed.
    """
    timings = {"decode": 0.0, "embed": 0.0, "f0_features": 0.0, "signal": 0.0}
    errors: list[str] = []
    unreadable: dict[int, tuple[str, str]] = {}
    loaded = {}
    t0 = time.time()
    for i, original_path, anon_path in chunk:
        side = "original"
        try:
            original = _load_finite(original_path)
            side = "anonymized"
            loaded[i] = (original, _load_finite(anon_path))
        except AudioError as err:
            errors.append(str(err))
            unreadable[i] = (side, str(err))
    timings["decode"] += time.time() - t0
    todo = [i for i in loaded if i not in cached]
    computed: dict[int, dict] = {}
    if todo:
        described = _describe(
            [loaded[i][0][0] for i in todo],
            [loaded[i][0][1] for i in todo],
            backend,
            attacker_backend,
            need_attr,
            timings,
        )
        computed = dict(zip(todo, described))
    indices = list(loaded)
    anonymized: dict[int, dict] = {}
    signal: dict[int, dict[str, float]] = {}
    notes: dict[int, dict[str, str]] = {}
    for i in indices:
        (w_o, _), (w_a, _) = loaded[i]
        problem = signal_metrics.pair_problem(w_o, w_a, FEATURE_RATE, signal_metrics.MIN_SECONDS)
        notes[i] = {"link.cosine": problem} if problem else {}
    if indices:
        described = _describe(
            [loaded[i][1][0] for i in indices],
            [loaded[i][1][1] for i in indices],
            backend,
            attacker_backend,
            need_attr,
            timings,
        )
        for i, entry in zip(indices, described):
            anonymized[i] = entry
            if need_signal:
                t0 = time.time()
                (w_o, d_o), (w_a, d_a) = loaded[i]
                original_entry = cached.get(i) or computed[i]
                if known and known.get(i):
                    signal[i] = {name: float(known[i][name][0]) for name in REUSED_SIGNAL}
                    signal[i]["lsd_db"] = signal_metrics.log_spectral_distance(w_o, w_a, FEATURE_RATE)
                    signal[i]["stoi_lag_ms"] = 1000 * signal_metrics.stoi_lag(w_o, w_a, FEATURE_RATE) / FEATURE_RATE
                    signal[i]["level_change_db"] = float(signal_metrics.level_change_db(w_o, w_a))  # as written
                    signal_notes = {f"signal.{name}": known[i][name][1] for name in REUSED_SIGNAL if known[i][name][1]}
                else:
                    signal[i], signal_notes = _pair_signal(w_o, d_o, w_a, d_a, original_entry["f0"], entry["f0"])
                notes[i].update(signal_notes)
                timings["signal"] += time.time() - t0
    notes.update({i: {UNREADABLE: f"unreadable {side} file ({why})"} for i, (side, why) in unreadable.items()})
    return _ChunkResult(indices, computed, anonymized, signal, errors, timings, notes, unreadable)


_WORKER_BACKENDS: dict[tuple, tuple] = {}


def _extract_chunk_in_worker(chunk, cached, asv_model, need_embed, need_signal, need_attr, known=None) -> _ChunkResult:
    """The same in a worker process: the encoders are loaded once per worker, then reused."""
    key = (asv_model, need_embed, need_attr)
    if key not in _WORKER_BACKENDS:
        import torch

        torch.set_num_threads(1)
        _WORKER_BACKENDS.clear()
        _WORKER_BACKENDS[key] = build_backends(asv_model, need_embed, need_attr)
    return _extract_chunk(chunk, cached, *_WORKER_BACKENDS[key], need_signal, need_attr, known)


def extract(
    pairs,
    backend,
    attacker_backend,
    need_signal: bool = True,
    need_attr: bool = True,
    use_cache: bool = True,
    corpus_root: Path | None = None,
    progress: bool = True,
    executor=None,
    backend_spec: tuple | None = None,
    known: list[dict | None] | None = None,
) -> Extracted:
    """Decode every pair once and compute all per-utterance quantities.

    `known` (per pair, from `manifest_scores`): scores the anonymize run
    already computed; their pairs' STOI, F0 r, duration ratio and level change
    are taken from it instead of being computed again.

    With `executor` (from `anoncli.parallel.make_executor`) the chunks run
    on its workers, which build their own encoders from `backend_spec`
    (asv_model, need_embed); the cache of original-side results stays here.
    """
    from anoncli.progress import progress_bar

    cache_name = f"{getattr(backend, 'name', 'none')}+{getattr(attacker_backend, 'name', 'none')}+{int(need_attr)}"
    cache = OriginalCache(corpus_root or Path("."), cache_name, enabled=use_cache and corpus_root is not None)
    n = len(pairs)
    orig_entries: list[dict | None] = [None] * n
    anon_entries: list[dict | None] = [None] * n
    signal = {k: np.full(n, np.nan) for k in SIGNAL_COLUMNS}
    notes: list[dict[str, str]] = [{} for _ in range(n)]
    ok = np.zeros(n, dtype=bool)
    errors: list[str] = []
    unreadable: dict[int, tuple[str, str]] = {}
    timings = {"decode": 0.0, "embed": 0.0, "f0_features": 0.0, "signal": 0.0}
    keys = [file_key(utt.path) for utt, _ in pairs]

    known = known or [None] * n

    def chunk_and_cached(start: int):
        """Pair indices from `start` (CHUNK of them) with paths, their cache hits and their manifest scores."""
        chunk = [(i, pairs[i][0].path, pairs[i][1]) for i in range(start, min(n, start + CHUNK))]
        cached = {}
        for i, _, _ in chunk:
            hit = cache.get(keys[i])
            if hit is not None and (not need_attr or hit["features"].size):
                cached[i] = hit
        return chunk, cached, {i: known[i] for i, _, _ in chunk if known[i]}

    def merge(result: _ChunkResult, cached: dict[int, dict]) -> None:
        """Fold one chunk's result into the per-pair arrays and the cache."""
        errors.extend(result.errors)
        unreadable.update(result.unreadable)
        for i in result.unreadable:
            notes[i] = result.notes[i]
        for name, seconds in result.timings.items():
            timings[name] += seconds
        for i, entry in result.original.items():
            cache.put(keys[i], entry)
        for i in result.indices:
            orig_entries[i] = cached.get(i) or result.original[i]
            anon_entries[i] = result.anonymized[i]
            ok[i] = True
            for name, value in result.signal.get(i, {}).items():
                signal[name][i] = value
            notes[i] = result.notes.get(i, {})

    bar = progress_bar(total=n, desc="extracting", unit="utt", enabled=progress, leave=False)
    if executor is None:
        for start in range(0, n, CHUNK):
            chunk, cached, chunk_known = chunk_and_cached(start)
            merge(_extract_chunk(chunk, cached, backend, attacker_backend, need_signal, need_attr, chunk_known), cached)
            bar.update(len(chunk))
    else:
        from concurrent.futures import FIRST_COMPLETED, wait

        asv_model, need_embed = backend_spec
        submitted = {}
        for start in range(0, n, CHUNK):
            chunk, cached, chunk_known = chunk_and_cached(start)
            future = executor.submit(
                _extract_chunk_in_worker, chunk, cached, asv_model, need_embed, need_signal, need_attr, chunk_known
            )
            submitted[future] = (chunk, cached)
        pending = set(submitted)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                chunk, cached = submitted.pop(future)
                merge(future.result(), cached)
                bar.update(len(chunk))
    bar.close()
    cache.save()
    link = None
    if any(known):
        link = np.array([entry["link_cosine"][0] if entry and "link_cosine" in entry else np.nan for entry in known])
    reused = sum(1 for i, entry in enumerate(known) if entry and ok[i]) if need_signal else 0
    return Extracted(
        _stack(orig_entries, ok),
        _stack(anon_entries, ok),
        signal,
        ok,
        errors,
        timings,
        notes,
        link,
        reused,
        dict(sorted(unreadable.items())),
    )


def _stack(entries: list[dict | None], ok: np.ndarray) -> SideArrays:
    """Arrays over all pairs; rows of failed pairs are zeros (and masked by `ok`)."""
    template = next((e for e in entries if e is not None), None)
    if template is None:
        return SideArrays(None, None, None, np.full(len(entries), np.nan), None)

    def stack(name):
        """Entry `name` of every pair stacked as float32 (zeros for failed pairs); None when the entries have none."""
        if template[name] is None:
            return None
        zero = np.zeros_like(template[name])
        return np.stack([e[name] if e is not None else zero for e in entries]).astype(np.float32)

    return SideArrays(
        embeddings=stack("embedding"),
        attacker_embeddings=stack("attacker_embedding"),
        features=stack("features"),
        durations=np.array([e["duration"] if e is not None else np.nan for e in entries]),
        f0=[e["f0"] if e is not None else np.zeros(0) for e in entries],
    )
