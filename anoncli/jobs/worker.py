"""What one worker does with one batch: decode, anonymize, encode, record.

Runs in the driver process (--jobs 1) or in a worker process; the method is
built once per process and reused for every batch that process receives.
A method that works on numpy arrays (`Method.tensor_inputs` false, e.g.
McAdams' compiled CPU kernel) gets numpy arrays, and then nothing here
imports torch: the lean CPU path.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from anoncli import __version__
from anoncli.atomic import atomic_path
from anoncli.audio import Audio, fit_length, resample, write_audio
from anoncli.corpus.reading import read_utterance_audio, source_stamp
from anoncli.corpus.utterance import Utterance
from anoncli.corpus.walk import fs_name
from anoncli.errors import AudioError, EnvironmentFailure
from anoncli.jobs.pseudonyms import Pseudonymizer
from anoncli.manifest.schema import STATUS_OK, ManifestRow
from anoncli.manifest.writer import write_batch
from anoncli.methods import Method, MethodOptions, MethodOutput, create_method
from anoncli.parallel import init_worker

if TYPE_CHECKING:
    import pyarrow as pa

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
    # Write the batch's manifest file here; False: the driver writes it from the returned rows
    # (forked local workers then spend no time on Arrow tables; the driver builds one per batch anyway to merge it).
    record_batches: bool = True


@dataclass
class BatchResult:
    """What one batch did: ok and failed counts, seconds of audio, error and warning lines, and its manifest rows."""

    ok: int = 0
    failed: int = 0
    audio_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # the manifest rows written for this batch (flat records)
    pending_file: str | None = None  # the manifest batch file holding `rows`


_METHODS: dict[str, Any] = {}


def method_for(spec: JobSpec) -> Method:
    """The job's method, built and prepared once per worker process (cached by method name and options)."""
    key = json.dumps([spec.method, spec.options.__dict__], sort_keys=True, default=str)
    if key not in _METHODS:
        _METHODS.clear()
        method = create_method(spec.method, spec.options)
        method.prepare()
        _METHODS[key] = method
    return _METHODS[key]


def preload_method(spec: JobSpec) -> None:
    """Build the job's method in this worker's cache (weights loaded once per worker, before its first batch)."""
    if spec.single_thread:
        init_worker()
    method_for(spec)


def output_rel_path(utt: Utterance, fmt: str, pseudonyms: Pseudonymizer | None) -> str:
    """Where an utterance's audio goes under OUT: its corpus path with `.fmt`, or `<pseudonym>.fmt`."""
    if pseudonyms is not None:
        return f"{pseudonyms.utterance(utt.utt_id)}.{fmt}"
    return str(PurePosixPath(utt.rel_path).with_suffix(f".{fmt}"))


def features_rel_path(utt: Utterance, pseudonyms: Pseudonymizer | None) -> str:
    """Where an utterance's feature output goes under OUT: `features/<stem or pseudonym>.npy`."""
    stem = (
        pseudonyms.utterance(utt.utt_id) if pseudonyms is not None else str(PurePosixPath(utt.rel_path).with_suffix(""))
    )
    return f"{FEATURES_DIR}/{stem}.npy"


def as_array(values: Any) -> np.ndarray:
    """A numpy array of a method's output (numpy, or a torch tensor on any device)."""
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _save_features(path: Path, values) -> None:
    array = as_array(values)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32, copy=False))


def seeding_identity(utt: Utterance, pseudonyms: Pseudonymizer | None) -> Utterance:
    """The utterance as its per-utterance draws see it: itself, or with keyed pseudonyms for its ids.

    A pseudonymized run seeds each utterance (and, with --per-speaker, each
    speaker) from its pseudonym, so that the manifest's `seed` and `params`
    cannot be matched with a run on the public corpus without the key.
    """
    if pseudonyms is None:
        return utt
    return replace(
        utt, utt_id=pseudonyms.utterance(utt.utt_id), labels={**utt.labels, "speaker": pseudonyms.speaker(utt.speaker)}
    )


def new_row(spec: JobSpec, utt: Utterance, pseudonyms: Pseudonymizer | None) -> ManifestRow:
    """An utterance's manifest row before it is processed; identifying fields are replaced when pseudonymizing."""
    labels = {
        column: utt.labels.get(column)
        for column in spec.label_columns
        if column != "speaker" and not (pseudonyms and column.startswith("label_"))
    }
    return ManifestRow(
        utt_id=pseudonyms.utterance(utt.utt_id) if pseudonyms else utt.utt_id,
        source_path=None if pseudonyms else utt.source_path,
        speaker=pseudonyms.speaker(utt.speaker) if pseudonyms else utt.speaker,
        labels=labels,
        method=spec.method,
        anoncli_version=__version__,
    )


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if not isinstance(err, AudioError) else text


def _single_thread_torch(method: Method) -> None:
    """One torch thread in this worker, for methods that use torch (a lean method never imports it)."""
    if method.tensor_inputs or "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)


@dataclass
class _Loaded:
    """One decoded utterance waiting for the method."""

    utt: Utterance
    row: ManifestRow
    audio: Audio
    wave: Any  # at the method's rate: numpy, or a torch tensor on the method's device
    params: dict
    decode_s: float


def process_batch(spec: JobSpec, utterances: list[Utterance]) -> BatchResult:
    """Anonymise a batch: read, process, write each file and record one manifest row per file.

    A file that fails (bad input, a method error) is recorded as failed and the
    batch goes on; OSError, MemoryError and EnvironmentFailure stop the job
    instead (the file stays unrecorded, to be redone on resume).
    """
    method = method_for(spec)
    if spec.single_thread:
        _single_thread_torch(method)
    pseudonyms = Pseudonymizer(spec.pseudonym_key) if spec.pseudonym_key else None
    out = Path(spec.out)
    result = BatchResult()
    rows: list[ManifestRow] = []
    loaded: list[_Loaded] = []

    for utt in utterances:
        started = time.perf_counter()
        row = new_row(spec, utt, pseudonyms)
        if pseudonyms is None:  # taken before the read: an input changed meanwhile is redone by the next run
            stamp = source_stamp(utt)
            if stamp is not None:
                row.update(source_size=stamp.size, source_mtime_ns=stamp.mtime_ns, source_sha256=stamp.sha256)
        try:
            audio = read_utterance_audio(utt, spec.channel)
            if audio.notes:
                row.note = "; ".join(audio.notes)
                result.warnings.extend(f"{utt.rel_path}: {note}" for note in audio.notes)
            seeded = seeding_identity(utt, pseudonyms)
            params = method.utterance_params(seeded)
            row.update(
                duration_s=audio.duration_s,
                sample_rate=audio.sample_rate,
                seed=method.utterance_seed(seeded),
                # the per-utterance draws only: the method's settings are in the schema metadata and run.json
                params=json.dumps(params, sort_keys=True, default=str),
            )
            loaded.append(_Loaded(utt, row, audio, _method_input(method, audio), params, time.perf_counter() - started))
        except Exception as err:  # one bad file must not stop the batch
            rows.append(row.fail(_one_line(err), time.perf_counter() - started))
            result.errors.append(f"{utt.rel_path}: {_one_line(err)}")

    prepared = None
    if spec.score and spec.score_plan is not None and loaded:
        from anoncli.jobs import scores

        # the originals' sides, before the method: a worker on the same speaker's next batch finds them cached
        rate = method.sample_rate
        prepared = scores.prepare(
            spec.score_plan, [(item.utt, item.wave, rate or item.audio.sample_rate) for item in loaded]
        )
    written = []  # (utterance, row, output wave or None, its rate) of the files written, for the scores
    method_started = time.perf_counter()
    outputs = _run_method(method, loaded)
    # elapsed_s of a row: its own decode and write time plus its share of the batch's method time
    method_share = (time.perf_counter() - method_started) / max(1, len(loaded))
    for item, output in zip(loaded, outputs):
        started = time.perf_counter() - item.decode_s - method_share
        row = item.row
        try:
            if isinstance(output, BaseException):
                raise output
            wave_out = _write_outputs(
                spec, method, out, item.utt, row, item.audio, output, pseudonyms, item.wave.shape[-1]
            )
            row.update(status=STATUS_OK, elapsed_s=time.perf_counter() - started)
            written.append((item.utt, row, *(wave_out or (None, None))))
            rows.append(row)
            result.ok += 1
            result.audio_s += item.audio.duration_s
        except Exception as err:
            # The output folder refused a write (disk full, permissions...): not this file's fault,
            # so the job stops and the file stays unrecorded, to be redone when the job resumes.
            if isinstance(err, (MemoryError, OSError, EnvironmentFailure)):
                raise
            message = _one_line(err)
            rows.append(row.fail(message, time.perf_counter() - started))
            result.errors.append(f"{item.utt.rel_path}: {message}")
    result.failed = len(rows) - result.ok
    if prepared is not None:
        from anoncli.jobs import scores

        result.warnings.extend(scores.finish(spec.score_plan, prepared, written))
    result.rows = [row.to_record() for row in rows]
    if rows and spec.record_batches:
        result.pending_file = str(write_batch(out, spec.shard, result.rows, spec.schema))
    return result


def _method_input(method: Method, audio: Audio) -> Any:
    """The decoded samples at the method's rate: numpy for a lean method, else a tensor on its device."""
    rate = method.sample_rate or audio.sample_rate
    if not method.tensor_inputs:
        return resample(audio.samples, audio.sample_rate, rate)
    import torch

    return resample(torch.from_numpy(audio.samples), audio.sample_rate, rate).to(method.device)


def _inference(method: Method):
    """torch's inference mode for a torch method; nothing (and no torch import) for a lean one."""
    if not method.tensor_inputs:
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


def _run_method(method: Method, loaded: list[_Loaded]) -> list:
    """Whole batch at once; if that fails, one at a time so only the culprit fails."""
    if not loaded:
        return []
    waves = [item.wave for item in loaded]
    params = [item.params for item in loaded]
    try:
        with _inference(method):
            return list(method.process(waves, params))
    except Exception:
        if len(loaded) == 1:
            return [RuntimeError(traceback.format_exc().strip().splitlines()[-1])]
    outputs = []
    for wave, param in zip(waves, params):
        try:
            with _inference(method):
                outputs.extend(method.process([wave], [param]))
        except Exception as err:
            outputs.append(err)
    return outputs


def typed_output(method: Method, output: Any) -> MethodOutput:
    """A method's result for one utterance as a `MethodOutput`.

    Methods return `MethodOutput`s; a bare array (audio, or features for a
    features method) or an {"audio", "features"} dict from an older method is
    wrapped.
    """
    if isinstance(output, MethodOutput):
        return output
    if isinstance(output, dict):
        return MethodOutput(audio=output.get("audio"), features=output.get("features"))
    if method.output_kind == "features":
        return MethodOutput(features=output)
    return MethodOutput(audio=output)


def output_length(made: int, method_input: int, audio: Audio, rate_out: int) -> int:
    """Samples of a written output: the input's length at `rate_out`, scaled by the method's own length change.

    made: samples the method returned for `method_input` samples at its
    rate. A method that keeps the length gives exactly
    round(len(input) * rate_out / input rate) samples (len(input) at the
    input's rate), whatever the rounding of the two resamplings.
    """
    nominal = round(len(audio.samples) * rate_out / audio.sample_rate)
    return nominal if made == method_input else max(1, round(made * nominal / max(1, method_input)))


def _write_outputs(
    spec,
    method: Method,
    out: Path,
    utt: Utterance,
    row: ManifestRow,
    audio: Audio,
    output,
    pseudonyms,
    method_input: int,
) -> tuple[np.ndarray, int] | None:
    """Write one utterance's outputs; returns the audio as written (samples, rate), at the method's rate (not
    resampled for writing, so that scores need no second resampling), or None for features only.

    method_input: the samples the method was given (at its rate), for `output_length`."""
    output = typed_output(method, output)
    if output.features is not None:
        rel = features_rel_path(utt, pseudonyms)
        _save_features(out / fs_name(rel), output.features)
        row.features_path = rel
    if output.audio is not None:
        made = as_array(output.audio).astype(np.float32, copy=False).reshape(-1)
        if not np.isfinite(made).all():
            raise AudioError("method produced NaN or infinite samples")
        rate_in = method.sample_rate or audio.sample_rate
        rate_out = spec.output_sample_rate or audio.sample_rate
        wave = fit_length(resample(made, rate_in, rate_out), output_length(len(made), method_input, audio, rate_out))
        rel = output_rel_path(utt, spec.fmt, pseudonyms)
        top = write_audio(out / fs_name(rel), wave, rate_out, spec.fmt)
        if top > 0.999:  # write_audio scaled it down rather than clip: say so (a float input above full scale)
            scaled = f"output scaled by {20 * np.log10(0.999 / top):.1f} dB to fit the 16-bit range (peak {top:.3g})"
            row.note = f"{row.note}; {scaled}" if row.note else scaled
            made = made * np.float32(0.999 / top)  # the scores (level_change_db) measure the file as written
        row.update(output_path=rel, output_sample_rate=rate_out)
        return made, rate_in
    return None
