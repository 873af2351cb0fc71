"""What one worker does with one batch: decode, anonymize, encode, record.

Runs in the driver process (--jobs 1) or in a joblib worker; the method is
built once per process and reused for every batch that process receives.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from anoncli import __version__
from anoncli.audio import Audio, resample, temp_path_for, write_audio
from anoncli.corpus.reading import read_utterance_audio
from anoncli.corpus.utterance import Utterance
from anoncli.errors import AudioError, EnvironmentFailure
from anoncli.jobs.pseudonyms import Pseudonymizer
from anoncli.manifest.schema import STATUS_FAILED, STATUS_OK
from anoncli.manifest.writer import write_batch
from anoncli.methods import MethodOptions, create_method
from anoncli.parallel import init_worker

FEATURES_DIR = "features"


@dataclass
class JobSpec:
    """Everything a worker needs, small and picklable."""

    out: str
    shard: tuple[int, int]
    method: str
    options: MethodOptions
    label_columns: list[str]
    schema: pa.Schema
    fmt: str = "wav"
    output_sample_rate: int | None = None
    pseudonym_key: bytes | None = None
    score: bool = False
    score_plan: Any = None  # anoncli.jobs.scores.ScorePlan when scores are on
    single_thread: bool = True
    channel: int | None = None  # 1-based channel to read instead of the mono mixdown


@dataclass
class BatchResult:
    ok: int = 0
    failed: int = 0
    audio_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # the manifest rows written for this batch


_METHODS: dict[str, Any] = {}


def method_for(spec: JobSpec):
    key = json.dumps([spec.method, spec.options.__dict__], sort_keys=True, default=str)
    if key not in _METHODS:
        _METHODS.clear()
        _METHODS[key] = create_method(spec.method, spec.options)
    return _METHODS[key]


def preload_method(spec: JobSpec) -> None:
    """Build the job's method in this worker's cache (weights loaded once per worker, before its first batch)."""
    if spec.single_thread:
        init_worker()
    method_for(spec)


def output_rel_path(utt: Utterance, fmt: str, pseudonyms: Pseudonymizer | None) -> str:
    if pseudonyms is not None:
        return f"{pseudonyms.utterance(utt.utt_id)}.{fmt}"
    return str(PurePosixPath(utt.rel_path).with_suffix(f".{fmt}"))


def features_rel_path(utt: Utterance, pseudonyms: Pseudonymizer | None) -> str:
    stem = pseudonyms.utterance(utt.utt_id) if pseudonyms is not None else str(PurePosixPath(utt.rel_path).with_suffix(""))
    return f"{FEATURES_DIR}/{stem}.npy"


def _save_features(path: Path, values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    tmp = temp_path_for(path)
    with open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32, copy=False))
    os.replace(tmp, path)


class _Row:
    """Builds one manifest row; identifying fields are replaced when pseudonymizing."""

    def __init__(self, spec: JobSpec, utt: Utterance, pseudonyms: Pseudonymizer | None):
        self.spec = spec
        self.values: dict[str, Any] = {
            "utt_id": pseudonyms.utterance(utt.utt_id) if pseudonyms else utt.utt_id,
            "source_path": None if pseudonyms else utt.source_path,
            "speaker": pseudonyms.speaker(utt.speaker) if pseudonyms else utt.speaker,
            "method": spec.method,
            "anoncli_version": __version__,
        }
        for column in spec.label_columns:
            if column == "speaker" or (pseudonyms and column.startswith("label_")):
                continue
            self.values[column] = utt.labels.get(column)

    def fail(self, message: str, started: float) -> dict:
        self.values.update(status=STATUS_FAILED, error=message, elapsed_s=time.perf_counter() - started)
        return self.values


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if not isinstance(err, AudioError) else text


def process_batch(spec: JobSpec, utterances: list[Utterance]) -> BatchResult:
    if spec.single_thread:
        torch.set_num_threads(1)
    method = method_for(spec)
    pseudonyms = Pseudonymizer(spec.pseudonym_key) if spec.pseudonym_key else None
    out = Path(spec.out)
    result = BatchResult()
    rows: list[dict] = []
    # (utterance, row, decoded audio, working-rate wave, params, seconds spent decoding)
    loaded: list[tuple[Utterance, _Row, Audio, torch.Tensor, dict, float]] = []

    for utt in utterances:
        started = time.perf_counter()
        row = _Row(spec, utt, pseudonyms)
        try:
            audio = read_utterance_audio(utt, spec.channel)
            if audio.notes:
                row.values["note"] = "; ".join(audio.notes)
                result.warnings.extend(f"{utt.rel_path}: {note}" for note in audio.notes)
            params = method.utterance_params(utt)
            row.values.update(duration_s=audio.duration_s, sample_rate=audio.sample_rate,
                              seed=method.utterance_seed(utt),
                              params=json.dumps({**method.config(), **params}, sort_keys=True, default=str))
            wave = torch.from_numpy(audio.samples)
            wave = resample(wave, audio.sample_rate, method.sample_rate or audio.sample_rate).to(method.device)
            loaded.append((utt, row, audio, wave, params, time.perf_counter() - started))
        except Exception as err:  # one bad file must not stop the batch
            rows.append(row.fail(_one_line(err), started))
            result.errors.append(f"{utt.rel_path}: {_one_line(err)}")

    prepared = None
    if spec.score and spec.score_plan is not None and loaded:
        from anoncli.jobs import scores

        # the originals' sides, before the method: a worker on the same speaker's next batch finds them cached
        rate = method.sample_rate
        prepared = scores.prepare(spec.score_plan, [(utt, wave, rate or audio.sample_rate)
                                                    for utt, _row, audio, wave, _params, _s in loaded])
    written = []  # (utterance, row, output wave or None, its rate) of the files written, for the scores
    method_started = time.perf_counter()
    outputs = _run_method(method, loaded)
    # elapsed_s of a row: its own decode and write time plus its share of the batch's method time
    method_share = (time.perf_counter() - method_started) / max(1, len(loaded))
    for (utt, row, audio, _wave, _params, decode_s), output in zip(loaded, outputs):
        started = time.perf_counter() - decode_s - method_share
        try:
            if isinstance(output, BaseException):
                raise output
            wave_out = _write_outputs(spec, method, out, utt, row, audio, output, pseudonyms)
            row.values.update(status=STATUS_OK, elapsed_s=time.perf_counter() - started)
            written.append((utt, row.values, *(wave_out or (None, None))))
            rows.append(row.values)
            result.ok += 1
            result.audio_s += audio.duration_s
        except Exception as err:
            # The output folder refused a write (disk full, permissions...): not this file's fault,
            # so the job stops and the file stays unrecorded, to be redone when the job resumes.
            if isinstance(err, (MemoryError, OSError, EnvironmentFailure)):
                raise
            message = _one_line(err)
            rows.append(row.fail(message, started))
            result.errors.append(f"{utt.rel_path}: {message}")
    result.failed = len(rows) - result.ok
    if prepared is not None:
        from anoncli.jobs import scores

        result.warnings.extend(scores.finish(spec.score_plan, prepared, written))
    if rows:
        write_batch(out, spec.shard, rows, spec.schema)
    result.rows = rows
    return result


def _run_method(method, loaded) -> list:
    """Whole batch at once; if that fails, one at a time so only the culprit fails."""
    if not loaded:
        return []
    waves = [item[3] for item in loaded]
    params = [item[4] for item in loaded]
    try:
        with torch.inference_mode():
            return list(method.process(waves, params))
    except Exception:
        if len(loaded) == 1:
            return [RuntimeError(traceback.format_exc().strip().splitlines()[-1])]
    outputs = []
    for wave, param in zip(waves, params):
        try:
            with torch.inference_mode():
                outputs.extend(method.process([wave], [param]))
        except Exception as err:
            outputs.append(err)
    return outputs


def _write_outputs(spec, method, out: Path, utt: Utterance, row: _Row, audio: Audio, output,
                   pseudonyms) -> tuple[np.ndarray, int] | None:
    """Write one utterance's outputs; returns the audio as the method made it (samples, rate) before it was
    resampled for writing, or None for features only."""
    audio_out, features_out = output, None
    if isinstance(output, dict):
        audio_out, features_out = output.get("audio"), output.get("features")
    elif method.output_kind == "features":
        audio_out, features_out = None, output
    if features_out is not None:
        rel = features_rel_path(utt, pseudonyms)
        _save_features(out / rel, features_out)
        row.values["features_path"] = rel
    if audio_out is not None:
        wave = audio_out.detach().float().reshape(-1)
        if not torch.isfinite(wave).all():
            raise AudioError("method produced NaN or infinite samples")
        rate_in = method.sample_rate or audio.sample_rate
        rate_out = spec.output_sample_rate or audio.sample_rate
        made = wave.cpu()
        wave = resample(made, rate_in, rate_out).numpy()
        rel = output_rel_path(utt, spec.fmt, pseudonyms)
        write_audio(out / rel, wave, rate_out, spec.fmt)
        row.values.update(output_path=rel, output_sample_rate=rate_out)
        return made.numpy(), rate_in
    return None
