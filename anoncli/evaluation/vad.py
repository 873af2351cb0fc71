"""VAD probe: a pretrained voice activity detector (silero-vad) as a second speech-presence attacker.

The `features` probe trains its speech-presence attacker on the evaluated
clips themselves. This probe asks a detector that was trained elsewhere and
never sees the evaluated data: silero-vad (Silero Team, "Silero VAD:
pre-trained enterprise-grade Voice Activity Detector", 2021-2025; MIT
licence), whose TorchScript weights ship inside the `silero-vad` package, so
it runs offline and needs neither onnxruntime nor a download.

Per clip and side (original, anonymized) it gives the fraction of 32-ms
frames (512 samples at 16 kHz) whose speech probability is at least 0.5,
silero's default threshold. Where the corpus labels speech presence (`speech`
yes/no, or the older `speech_present` 1/0, as `anoncli.mixtures` writes
them), it also gives the ROC AUC of that fraction as a score for "this clip
holds speech", over the clips. The clips are those the trained attacker is
scored on: rows with split = train and the model card's `train_speakers`
are left out.

The probe runs by default only on a corpus with such a label; `--probes vad`
runs it on any corpus (speech fractions alone, no AUC).
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import numpy as np

from anoncli.evaluation.probes import Probe, ProbeContext, ProbeResult, Row, fmt

SAMPLE_RATE = 16000  # silero-vad's native rate; every clip is resampled to it (load_16k)
FRAME = 512  # samples per frame the model scores at 16 kHz (32 ms)
THRESHOLD = 0.5  # silero's default: a frame with speech probability >= 0.5 is speech
SPEECH_LABELS = ("speech", "speech_present")  # speech-presence label columns, first found
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n"}
CHUNK = 32  # clips per task on a worker pool
SIDES = ("original", "anonymized")


def model_name() -> str:
    """The detector and its version as reports name it, e.g. "silero-vad 6.2.3"."""
    try:
        return f"silero-vad {importlib.metadata.version('silero-vad')}"
    except importlib.metadata.PackageNotFoundError:
        return "silero-vad"


@functools.lru_cache(maxsize=1)
def load_vad():
    """silero-vad's bundled TorchScript model, loaded once per process by the package's own `load_silero_vad`.

    Importing `silero_vad` sets torch's intra-op threads to 1 for the whole
    process; the caller's setting is put back. Its loader's deprecation
    warnings (importlib.resources.path, torch.jit.load) are silenced. Raises
    ImportError when the package is missing.
    """
    import warnings

    import torch

    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from silero_vad import load_silero_vad

            return load_silero_vad(onnx=False)
    finally:
        torch.set_num_threads(threads)


def speech_probabilities(wave: np.ndarray) -> np.ndarray:
    """silero-vad's speech probability per 32-ms frame of a 16 kHz mono wave.

    wave: (T,) float in [-1, 1] at 16 kHz. Returns (ceil(T / 512),) float32 in
    [0, 1]; the last frame is zero-padded, the model's state starts afresh.
    """
    import torch

    samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if samples.numel() == 0:
        return np.zeros(0, dtype=np.float32)
    with torch.no_grad():
        return load_vad().audio_forward(samples.unsqueeze(0), SAMPLE_RATE)[0].numpy().astype(np.float32)


def speech_fraction(wave: np.ndarray) -> float:
    """Fraction of the frames of a 16 kHz wave that silero-vad calls speech (probability >= THRESHOLD); NaN when empty."""
    probs = speech_probabilities(wave)
    return float(np.mean(probs >= THRESHOLD)) if probs.size else float("nan")


def speech_fractions_of_files(paths: list[str]) -> list[float]:
    """`speech_fraction` of each file (decoded, mixed down, resampled to 16 kHz); runs here or in a worker.

    A file that cannot be decoded gives NaN.
    """
    from anoncli.errors import AudioError
    from anoncli.scoring.features import load_16k

    out = []
    for path in paths:
        try:
            wave, _ = load_16k(Path(path))
        except AudioError:
            out.append(float("nan"))
            continue
        out.append(speech_fraction(wave))
    return out


def parse_presence(value) -> bool | None:
    """A speech-presence label as a bool: yes/no, 1/0, true/false; None when missing or anything else."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _held_out(ctx: ProbeContext) -> np.ndarray:
    """(N,) bool: pairs the trained attacker is also scored on (not split = train, not a model's train speaker)."""
    import pandas as pd

    from anoncli.evaluation.feature_probes import held_out_rows

    frame = pd.DataFrame({"split": ctx.labels("split"), "speaker": ctx.speakers})
    kept = held_out_rows(frame, Path(ctx.config.anonymized)).index
    mask = np.zeros(len(frame), dtype=bool)
    mask[np.asarray(kept, dtype=int)] = True
    return mask


def side_summary(fractions: np.ndarray, present: np.ndarray | None) -> dict:
    """One side's figures: mean speech fraction over the clips, with and without speech, and the AUC.

    fractions: (N,) speech fraction per clip (NaN for clips not scored);
    present: (N,) object array of True/False/None per clip, or None without a label.
    """
    from anoncli.scoring.metrics import binary_auc

    scored = np.isfinite(fractions)
    out: dict = {"speech_fraction_mean": float(np.mean(fractions[scored])) if scored.any() else float("nan")}
    if present is None:
        return out
    labelled = scored & np.array([p is not None for p in present])
    positive = np.array([p is True for p in present])
    for name, mask in (("with_speech", labelled & positive), ("without_speech", labelled & ~positive)):
        out[f"speech_fraction_mean_{name}"] = float(np.mean(fractions[mask])) if mask.any() else float("nan")
    out["auc"] = binary_auc(positive[labelled], fractions[labelled])
    return out


def vad_protocol(name: str) -> dict:
    """How the detector was built (summary.json meta.attackers.vad): pretrained elsewhere, nothing fitted here."""
    family = (
        f"{name} voice activity detector (pretrained, weights bundled with the package; nothing trained on "
        f"this data): fraction of 32-ms frames with speech probability >= {THRESHOLD}, the clip's score"
    )
    roles = {
        "original": "the detector on the original (input) audio",
        "anonymized": "the detector on the anonymized audio",
    }
    return {
        "family": family,
        "trained_on": None,
        "training": "not trained here",
        "attackers": roles,
        "text": f"vad: {family}; scored on the original and on the anonymized audio",
    }


class VadProbe(Probe):
    """summary.json `vad`: model, label, n (clips scored), n_with_speech, n_without_speech, left_out_train and
    per side (original, anonymized) speech_fraction_mean and, with a speech-presence label,
    speech_fraction_mean_with_speech, speech_fraction_mean_without_speech and auc; scores.parquet
    `vad.{original,anonymized}.speech_fraction`. Gate alias: `vad.<figure>` is `vad.anonymized.<figure>`."""

    kind = "vad"
    needs = frozenset({"pairs"})
    table_rank = 65  # right after the features probe's trained attackers
    gate_aliases = {"vad": "vad.anonymized"}

    def __init__(self, name: str | None = None, column: str | None = None):
        super().__init__(name)
        self.column = column

    @classmethod
    def available(cls, ctx: ProbeContext) -> tuple[list[Probe], list[str]]:
        column = next((c for c in SPEECH_LABELS if c in ctx.corpus.label_columns), None)
        named = cls.kind in (getattr(ctx.config, "probes", None) or [])
        if column or named:
            return [cls(column=column)], []
        return [], [
            f"{cls.kind}: not probed (no speech-presence label: a `speech` yes/no or `speech_present` 1/0 "
            f"column; `--probes {cls.kind}` gives silero-vad's speech fractions without an AUC)"
        ]

    def expected(self) -> dict:
        nan = float("nan")
        side = {"speech_fraction_mean": nan}
        if self.column:
            side.update(
                {"speech_fraction_mean_with_speech": nan, "speech_fraction_mean_without_speech": nan, "auc": nan}
            )
        return {"n": nan, **{s: dict(side) for s in SIDES}}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        from anoncli.progress import progress_bar

        n = len(ctx.utts)
        held_out = _held_out(ctx)
        todo = np.flatnonzero(held_out & ctx.valid)
        fractions = {side: np.full(n, np.nan) for side in SIDES}
        jobs = [
            (int(i), side, str(path))
            for i in todo
            for side, path in zip(SIDES, (ctx.utts[i].path, ctx.pairing.pairs[i][1]))
        ]
        chunks = [jobs[k : k + CHUNK] for k in range(0, len(jobs), CHUNK)]
        bar = progress_bar(total=len(jobs), desc="vad", unit="files", enabled=ctx.config.progress, leave=False)

        def take(chunk, values) -> None:
            for (i, side, _), value in zip(chunk, values):
                fractions[side][i] = value
            bar.update(len(chunk))

        try:
            if ctx.executor is None:
                for chunk in chunks:
                    take(chunk, speech_fractions_of_files([job[2] for job in chunk]))
            else:
                from concurrent.futures import as_completed

                futures = {
                    ctx.executor.submit(speech_fractions_of_files, [job[2] for job in chunk]): chunk for chunk in chunks
                }
                for future in as_completed(futures):
                    take(futures[future], future.result())
        finally:
            bar.close()

        present = np.array([parse_presence(v) for v in ctx.labels(self.column)], dtype=object) if self.column else None
        scored = np.isfinite(fractions["original"]) & np.isfinite(fractions["anonymized"])
        summary: dict = {
            "model": model_name(),
            "label": self.column,
            "n": int(scored.sum()),
            "left_out_train": int(np.count_nonzero(~held_out)),
        }
        notes = []
        if present is not None:
            positive = np.array([p is True for p in present])
            labelled = scored & np.array([p is not None for p in present])
            summary["n_with_speech"] = int(np.count_nonzero(labelled & positive))
            summary["n_without_speech"] = int(np.count_nonzero(labelled & ~positive))
            if not (summary["n_with_speech"] and summary["n_without_speech"]):
                notes.append(f"vad: no AUC (the {summary['n']} clips scored are all of one class of {self.column!r})")
        for side in SIDES:
            values = np.where(scored, fractions[side], np.nan)
            summary[side] = side_summary(values, present)
        plots = {}
        if present is not None and all(summary[side].get("auc") is not None for side in SIDES):
            plots["roc_inputs"] = {self.name: {side: (positive[labelled], fractions[side][labelled]) for side in SIDES}}
        columns = {f"vad.{side}.speech_fraction": fractions[side] for side in SIDES}
        return ProbeResult(summary, columns, notes, plots=plots, protocol=vad_protocol(summary["model"]))

    @classmethod
    def owns(cls, key: str, entry) -> bool:
        return key == cls.kind and "original" in entry

    @classmethod
    def table_rows(cls, key: str, entry: dict) -> list[Row]:
        original, anonymized = entry["original"], entry["anonymized"]
        model = entry.get("model", "silero-vad")
        if "auc" not in anonymized:
            return [
                (
                    f"VAD speech fraction ({model})",
                    fmt(original["speech_fraction_mean"], 3),
                    fmt(anonymized["speech_fraction_mean"], 3),
                    "",
                )
            ]
        return [
            (f"VAD speech AUC ({model})", fmt(original.get("auc"), 3), fmt(anonymized.get("auc"), 3), ""),
            (
                "VAD speech fraction, clips with speech",
                fmt(original.get("speech_fraction_mean_with_speech"), 3),
                fmt(anonymized.get("speech_fraction_mean_with_speech"), 3),
                "",
            ),
            (
                "VAD speech fraction, clips without",
                fmt(original.get("speech_fraction_mean_without_speech"), 3),
                fmt(anonymized.get("speech_fraction_mean_without_speech"), 3),
                "",
            ),
        ]
