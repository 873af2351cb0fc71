"""Mixtures of non-speech sound events and speech, with labels and clean stems (data for RDAL-M).

RDAL-M keeps sound events (utility) and removes speech (private). Its paper
mixes FSD50K events with LibriSpeech speech; that data cannot be downloaded
here, so `make_mixtures` builds the same kind of set from any speech corpus
and any folder of event recordings, and `synthesize_events` makes a folder of
synthetic events (tones, noise bursts, chirps, clicks, sirens) for tests and
CPU experiments.

Level convention: `snr_db` is the event-to-speech ratio over the whole clip,
10·log10(Σ event² / Σ speech²). Speech is the interference RDAL-M removes, so
the event is the "signal". `level_dbfs` is the mixture's absolute level: the
RMS (full scale 1.0) of its active span (`anoncli.dsp.levels.active_span`, the
measure RDAL-M's level-invariant mask uses); a mixture drawn at a level is
scaled, with its stems, to it (lower only where its peak would clip).

Event sources: clips cut from one recording share a source and stay on one
side of the split. A numeric source id is a Freesound sound id (UrbanSound8K's
`fsID`) and is written `fsNNN`, as ESC-50's `source_id` is, so a recording
that is in two event corpora is one source.

Output layout (OUT):
    OUT/mixtures/             the corpus to train on / anonymize
        metadata.csv          file_name, event (class), speech (yes/no), speech_present (1/0), snr_db, level_dbfs,
                              speech_source, speaker, event_source, event_source_id, event_corpus (the events
                              folder's name), event_fold, clean_event, clean_speech, split
        <event>/<id>.wav      mixtures
    OUT/stems/event/<id>.wav  the clean event (for the separation loss and SDR)
    OUT/stems/speech/<id>.wav the clean speech as placed in the mixture (silence if none)
Stem paths in metadata.csv are relative to OUT/mixtures.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anoncli.atomic import atomic_path
from anoncli.audio import read_audio, resample, write_audio
from anoncli.dsp.levels import active_span, rms_dbfs
from anoncli.errors import InputError

EVENT_CLASSES = ("tone", "noise_burst", "chirp", "clicks", "siren")


# ---------------------------------------------------------------- synthetic events
def _envelope(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A random attack/decay envelope, so events are not all stationary."""
    attack = max(1, int(sr * rng.uniform(0.005, 0.1)))
    release = max(1, int(sr * rng.uniform(0.02, 0.3)))
    env = np.ones(n, dtype=np.float32)
    env[:attack] = np.linspace(0, 1, attack)
    env[-release:] = np.minimum(env[-release:], np.linspace(1, 0, release))
    return env


def synth_event(kind: str, duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic event of class `kind`, peak-normalised to about 0.5."""
    n = int(duration_s * sr)
    t = np.arange(n) / sr
    if kind == "tone":
        f0 = rng.uniform(300, 2500)
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k**1.5 for k in (1, 2, 3))
    elif kind == "noise_burst":
        x = np.zeros(n)
        for _ in range(rng.integers(2, 6)):
            start, length = rng.integers(0, n), int(sr * rng.uniform(0.05, 0.3))
            seg = rng.standard_normal(min(length, n - start))
            x[start : start + len(seg)] += seg * np.hanning(len(seg))
        # crude high-pass tilt: first difference
        x = np.diff(x, prepend=0.0)
    elif kind == "chirp":
        f_start, f_end = rng.uniform(200, 1500), rng.uniform(2000, 6000)
        if rng.random() < 0.5:
            f_start, f_end = f_end, f_start
        freq = np.linspace(f_start, f_end, n)
        x = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    elif kind == "clicks":
        x = np.zeros(n)
        rate = rng.uniform(4, 25)
        for pos in np.arange(rng.uniform(0, 0.05), duration_s, 1.0 / rate):
            i = int(pos * sr)
            width = max(8, int(sr * 0.002))
            seg = rng.standard_normal(min(width, n - i)) * np.exp(-np.arange(min(width, n - i)) / (width / 4))
            x[i : i + len(seg)] += seg
    elif kind == "siren":
        fc, depth, rate = rng.uniform(600, 1500), rng.uniform(150, 500), rng.uniform(0.5, 3)
        freq = fc + depth * np.sin(2 * np.pi * rate * t)
        x = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    else:
        raise ValueError(f"unknown synthetic event class {kind!r}")
    x = np.asarray(x, dtype=np.float32) * _envelope(n, rng, sr)
    return (0.5 * x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32)


def synthesize_events(
    out_dir: str | Path,
    per_class: int = 20,
    sample_rate: int = 16000,
    duration_s: float = 2.0,
    classes=EVENT_CLASSES,
    seed: int = 0,
) -> Path:
    """Write OUT_DIR/<class>/<class>_<i>.wav: a folder `make_mixtures` reads as events."""
    out_dir = Path(out_dir)
    for c_index, kind in enumerate(classes):
        for i in range(per_class):
            rng = np.random.default_rng([seed, c_index, i])
            length = duration_s * rng.uniform(0.6, 1.0)
            write_audio(
                out_dir / kind / f"{kind}_{i:04d}.wav", synth_event(kind, length, sample_rate, rng), sample_rate
            )
    return out_dir


# ---------------------------------------------------------------- mixing
@dataclass
class EventFile:
    """One event recording: its path, its event class, and the recording it was cut from."""

    path: Path
    event: str
    source: str = ""  # recording the clip was cut from (clips of one source stay on one side of a split)
    corpus: str = ""  # the events folder's name (e.g. events-dev, esc50-dev)
    fold: str = ""  # the corpus's own fold (ESC-50), if it has one


def source_key(source: str) -> str:
    """A source id as the split compares it: a numeric id (a Freesound sound id) as `fsNNN`, others unchanged."""
    source = str(source).strip()
    return f"fs{source}" if source.isdigit() else source


def list_events(
    events_dir: str | Path, labels_file: str | Path | None = None, aliases: dict[str, str] | None = None
) -> list[EventFile]:
    """Event recordings with their class: sub-folder name, or a CSV with file_name/path and label/event
    (and optionally source_id/fsID/source and fold). `aliases` renames classes (e.g. {"dog_bark": "dog"}:
    one sound under two corpora's names). Sources are `source_key`s. Raises InputError for a missing
    folder or labels file, a CSV without the needed columns, or no recordings."""
    from anoncli.corpus.walk import iter_audio_files

    events_dir = Path(events_dir)
    if not events_dir.is_dir():
        raise InputError(f"{events_dir}: no such events folder")
    if labels_file is None and (events_dir / "metadata.csv").is_file():
        labels_file = events_dir / "metadata.csv"  # audiofolder corpus of events (e.g. UrbanSound8K excerpts)
    if labels_file is not None:
        labels_file = Path(labels_file)
        if not labels_file.is_file():
            raise InputError(f"{labels_file}: no such labels file")
        with open(labels_file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        key = next((k for k in ("file_name", "path") if rows and k in rows[0]), None)
        col = next((k for k in ("event", "label", "class") if rows and k in rows[0]), None)
        if key is None or col is None:
            raise InputError(f"{labels_file}: needs a file_name/path column and an event/label/class column")
        source = next((k for k in ("source_id", "fsID", "source") if rows and k in rows[0]), None)
        fold = "fold" if rows and "fold" in rows[0] else None
        files = [
            EventFile(
                events_dir / r[key],
                r[col],
                source_key(r[source]) if source else "",
                events_dir.name,
                str(r[fold]) if fold else "",
            )
            for r in rows
            if r.get(col)
        ]
    else:
        files = []
        for rel in sorted(iter_audio_files(events_dir)):
            parts = Path(rel).parts
            if len(parts) < 2:
                raise InputError(f"{events_dir}: {rel} is not in a class sub-folder (or pass a labels file)")
            files.append(EventFile(events_dir / rel, parts[0], corpus=events_dir.name))
    if not files:
        raise InputError(f"{events_dir}: no event recordings found")
    for f in files:
        f.event = (aliases or {}).get(f.event, f.event)
    return sorted(files, key=lambda f: str(f.path))


def _load(path: Path, sr: int) -> np.ndarray:
    import torch

    audio = read_audio(path)
    return resample(torch.from_numpy(audio.samples), audio.sample_rate, sr).numpy()


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Crop (random offset) or zero-pad (random offset) to exactly n samples."""
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start : start + n]
    out = np.zeros(n, dtype=np.float32)
    start = int(rng.integers(0, n - len(x) + 1))
    out[start : start + len(x)] = x
    return out


def mix_at_snr(event: np.ndarray, speech: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale `speech` so that 10·log10(Σevent²/Σspeech²) = snr_db; return (mixture, scaled speech)."""
    p_event = float(np.sum(event.astype(np.float64) ** 2))
    p_speech = float(np.sum(speech.astype(np.float64) ** 2))
    if p_speech <= 0 or p_event <= 0:
        raise ValueError("cannot set an SNR with a silent event or silent speech")
    gain = np.sqrt(p_event / (p_speech * 10 ** (snr_db / 10)))
    speech = (speech * gain).astype(np.float32)
    return (event + speech).astype(np.float32), speech


def _draw(value, rng: np.random.Generator) -> float:
    """A fixed value, a (low, high) range drawn uniformly, or a list of values drawn from."""
    if isinstance(value, tuple):
        return float(rng.uniform(*value))
    if isinstance(value, list):
        return float(value[int(rng.integers(len(value)))])
    return float(value)


def active_level_dbfs(wave: np.ndarray, sample_rate: int) -> float:
    """Level (dBFS, full scale 1.0) of a wave (samples,): the RMS of its active span (`dsp.levels.active_span`,
    frames within 40 dB of the loudest plus 0.3 s), as RDAL-M's mask measures it; -inf for silence."""
    start, stop = active_span(wave, sample_rate)
    return rms_dbfs(wave[start:stop])


def held_out_sources(events: list[EventFile], fraction: float, folds, rng: np.random.Generator) -> set[str]:
    """Event sources of the test split: in a corpus with folds, the sources of every clip in `folds` (when
    given); elsewhere a `fraction` of each class's sources (at least one, never all of a class's
    sources), drawn per events corpus and class. A source is one recording wherever it appears."""
    chosen: set[str] = set()
    for corpus, event_class in sorted({(ev.corpus, ev.event) for ev in events}):
        group = [ev for ev in events if ev.corpus == corpus and ev.event == event_class]
        if folds and all(ev.fold for ev in group):
            chosen |= {ev.source or str(ev.path) for ev in group if ev.fold in folds}
            continue
        sources = sorted({ev.source or str(ev.path) for ev in group})
        n_test = min(len(sources) - 1, int(round(len(sources) * fraction)))
        if fraction > 0 and len(sources) >= 2:
            chosen |= set(rng.permutation(sources)[: max(1, n_test)].tolist())
    return chosen


def make_mixtures(
    speech_corpus: str | Path | list,
    events_dir: str | Path | list,
    out: str | Path,
    *,
    snr_db: float | tuple[float, float] | list[float] = 0.0,
    speech_fraction: float = 0.5,
    duration_s: float = 2.0,
    sample_rate: int = 16000,
    test_fraction: float = 0.25,
    events_labels: str | Path | None = None,
    speech_labels: str | Path | None = None,
    max_mixtures: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    per_event: int = 1,
    test_speakers: list[str] | None = None,
    level_dbfs: float | tuple[float, float] | list[float] | None = None,
    test_folds: list[str] | None = None,
    event_aliases: dict[str, str] | None = None,
    splits: list[str] | None = None,
) -> Path:
    """Mix each event recording with a speech utterance (or none), write wavs, stems and metadata.

    Args:
        speech_corpus: one speech corpus folder, or a list of them (speakers pooled).
        events_dir: event recordings (class sub-folders, a labels CSV, or a folder with a
            metadata.csv holding path, label and source_id, as events-dev), or a list of such
            folders (classes and sources pooled; `events_labels` applies to a single folder only).
        snr_db: event-to-speech ratio in dB: a fixed value, a (low, high) range drawn
            uniformly per mixture, or a list of values drawn from.
        speech_fraction: share of mixtures with speech; the rest are the event alone.
        per_event: mixtures made from each event recording (different speech, SNR, offsets).
        test_fraction: share of event sources per class (clips cut from one recording share a source)
            and, unless `test_speakers` is given, of speakers in the test split.
        test_speakers: speakers whose speech goes only into test mixtures.
        level_dbfs: the mixture's absolute level (`active_level_dbfs`): fixed, a (low, high) range
            drawn uniformly, or a list; None keeps the event's own level. Drawn from a stream of its
            own, so the same seed at another level gives the same mixtures at that level.
        test_folds: folds (e.g. ESC-50's "4") whose sources form the test split of a corpus with a
            fold column; other corpora use `test_fraction`.
        event_aliases: class renames applied to every events folder, e.g. {"dog_bark": "dog"}.
        splits: write only the mixtures of these splits (e.g. ["test"]); every draw stays as it is
            when all are written.

    `split` (train/test) is decided per event source, so the clips of one
    recording never sit on both sides, and test mixtures take speech only from
    test speakers (speaker- and source-disjoint). Columns: `event` (class) and
    `speech` ("yes"/"no") are the utility and private labels.
    Returns OUT/mixtures (the corpus folder). Raises InputError for missing inputs.
    """
    from anoncli.corpus import open_corpus

    out = Path(out)
    corpus_dir = out / "mixtures"
    meta_path = corpus_dir / "metadata.csv"
    if meta_path.exists() and not overwrite:
        raise InputError(f"{meta_path}: mixtures already exist (pass --overwrite to make them again)")
    folders = events_dir if isinstance(events_dir, (list, tuple)) else [events_dir]
    events = [
        ev
        for folder in folders
        for ev in list_events(folder, events_labels if len(folders) == 1 else None, event_aliases)
    ]
    speech = []
    for folder in speech_corpus if isinstance(speech_corpus, (list, tuple)) else [speech_corpus]:
        speech += open_corpus(folder, labels_file=speech_labels).utterances
    if not speech:
        raise InputError(f"{speech_corpus}: no speech recordings found")
    rng = np.random.default_rng(seed)
    order = np.repeat(rng.permutation(len(events)), max(1, per_event))
    if max_mixtures is not None:
        order = order[:max_mixtures]

    # Event sources and speakers of the test split.
    # (drawn per event class, so every class with two or more sources is on both sides)
    held_out = held_out_sources(events, test_fraction, [str(f) for f in test_folds or []], rng)
    speakers = sorted({u.speaker for u in speech if u.speaker})
    if test_speakers is not None:
        test_set = set(test_speakers)
    elif len(speakers) >= 2 and test_fraction > 0:
        n_test = max(1, int(round(len(speakers) * test_fraction)))
        test_set = set(rng.permutation(speakers)[:n_test].tolist())
    else:
        test_set = set()
    pool = {
        "train": [u for u in speech if u.speaker not in test_set] or speech,
        "test": [u for u in speech if u.speaker in test_set] or speech,
    }
    # one draw stream per split, so writing only some splits (`splits`) changes no draw of the others
    split_rngs = {k: np.random.default_rng([seed, 7, i]) for i, k in enumerate(pool)}
    pools_rng = {k: list(split_rngs[k].permutation(len(v))) for k, v in pool.items()}

    rows = []
    n_samples = int(duration_s * sample_rate)
    for k, e_index in enumerate(order):
        item_rng = np.random.default_rng([seed, int(e_index), k])
        ev = events[int(e_index)]
        split = "test" if (ev.source or str(ev.path)) in held_out else "train"
        if splits is not None and split not in splits:
            continue
        event = _fit(_load(ev.path, sample_rate), n_samples, item_rng)
        snr = _draw(snr_db, item_rng)
        has_speech = item_rng.random() < speech_fraction and np.any(event)
        utt = None
        if has_speech:
            if not pools_rng[split]:
                pools_rng[split] = list(split_rngs[split].permutation(len(pool[split])))
            utt = pool[split][pools_rng[split].pop()]
            voice = _fit(_load(utt.path, sample_rate), n_samples, item_rng)
            if not np.any(voice):
                has_speech, utt = False, None
        if has_speech:
            mixture, voice = mix_at_snr(event, voice, snr)
        else:
            voice = np.zeros(n_samples, dtype=np.float32)
            mixture = event.copy()
        if level_dbfs is not None and np.any(mixture):
            target = _draw(level_dbfs, np.random.default_rng([seed, int(e_index), k, 1]))
            scale = 10 ** ((target - active_level_dbfs(mixture, sample_rate)) / 20)
            mixture, event, voice = mixture * scale, event * scale, voice * scale
        # One common gain keeps mixture = event + speech exact after clipping protection.
        peak = float(np.max(np.abs(mixture))) if mixture.size else 0.0
        if peak > 0.95:
            scale = 0.95 / peak
            mixture, event, voice = mixture * scale, event * scale, voice * scale
        name = f"mix_{k:05d}"
        write_audio(corpus_dir / ev.event / f"{name}.wav", mixture, sample_rate)
        write_audio(out / "stems" / "event" / f"{name}.wav", event, sample_rate)
        write_audio(out / "stems" / "speech" / f"{name}.wav", voice, sample_rate)
        rows.append(
            {
                "file_name": f"{ev.event}/{name}.wav",
                "event": ev.event,
                "speech": "yes" if has_speech else "no",
                "speech_present": int(bool(has_speech)),  # the same as 1/0 (older corpora had only this)
                "snr_db": round(snr, 3) if has_speech else "",
                "level_dbfs": round(active_level_dbfs(mixture, sample_rate), 2) if np.any(mixture) else "",
                "speech_source": str(utt.path) if utt else "",
                "speaker": (utt.speaker or "") if utt else "",
                "event_source": str(ev.path),
                "event_source_id": ev.source,
                "event_corpus": ev.corpus,
                "event_fold": ev.fold,
                "clean_event": f"../stems/event/{name}.wav",
                "clean_speech": f"../stems/speech/{name}.wav",
                "split": split,
            }
        )
    if not rows:
        raise InputError(f"{out}: no mixtures in the splits {', '.join(splits or [])}")
    with atomic_path(meta_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return corpus_dir
