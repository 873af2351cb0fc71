"""Audio decoding, resampling and atomic encoding.

Decoding is done with soundfile (torchaudio.load needs FFmpeg, which a fresh
machine may not have); torchaudio is used only for resampling.
"""

from __future__ import annotations

import io
import os
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from anoncli.errors import AudioError

# Shorter than one 20 ms analysis window at any rate we work at: such a file
# carries no speech a method could transform.
MIN_DURATION_S = 0.02

SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16"}


@dataclass
class Audio:
    """Mono float32 samples in [-1, 1] (nominally) and their sample rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers leave these placeholders in the header of complete files.
_PLACEHOLDER_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}


def _check_not_truncated(where: str, extra_info: str) -> None:
    """libsndfile quietly reads what is left of a cut-off WAV; a corpus tool must say so instead."""
    match = _DATA_CHUNK.search(extra_info or "")
    if match:
        declared, present = int(match.group(1)), int(match.group(2))
        if declared > present and declared not in _PLACEHOLDER_SIZES:
            raise AudioError(f"{where}: truncated (header declares {declared} bytes of audio, file holds {present})")


def _decode(source, where: str) -> Audio:
    """Open once, check the header, read, mix down and validate; one-line AudioError on any problem."""
    try:
        with sf.SoundFile(source) as handle:
            _check_not_truncated(where, handle.extra_info)
            data = handle.read(dtype="float32", always_2d=True)
            rate = handle.samplerate
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        if isinstance(source, (str, Path)) and Path(source).is_file() and Path(source).stat().st_size == 0:
            raise AudioError(f"{where}: empty file") from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AudioError(f"{where}: cannot decode audio ({reason})") from None
    except OSError as err:
        raise AudioError(f"{where}: cannot read ({err.strerror or err})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{where}: no samples")
    samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(samples).all():
        raise AudioError(f"{where}: contains NaN or infinite samples")
    if samples.shape[0] / rate < MIN_DURATION_S:
        raise AudioError(f"{where}: too short ({samples.shape[0] / rate:.3f} s < {MIN_DURATION_S} s)")
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), int(rate))


def read_audio(path: str | os.PathLike) -> Audio:
    """Decode a file to mono float32, raising AudioError with a one-line reason."""
    return _decode(str(path), str(path))


def decode_audio_bytes(data: bytes, where: str) -> Audio:
    """Decode audio held in memory (e.g. a command's output); `where` names it in errors."""
    if not data:
        raise AudioError(f"{where}: no data")
    return _decode(io.BytesIO(data), where)


@lru_cache(maxsize=32)
def _resampler(orig: int, new: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.Resample(orig, new, dtype=torch.float32)


def resample(samples: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Resample the last axis from `orig` to `new` Hz (torchaudio's band-limited sinc)."""
    if orig == new:
        return samples
    resampler = _resampler(int(orig), int(new)).to(samples.device)
    return resampler(samples)


def peak_safe(samples: np.ndarray, peak: float = 0.999) -> np.ndarray:
    """Scale down only when the signal would clip; leave it untouched otherwise."""
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top > peak:
        return samples * (peak / top)
    return samples


def temp_path_for(path: Path) -> Path:
    """A sibling name that a resumed job recognises as an unfinished write."""
    return path.with_name(f".{path.name}.anoncli-tmp-{socket.gethostname()}-{os.getpid()}")


def is_temp_path(path: Path) -> bool:
    return path.name.startswith(".") and ".anoncli-tmp-" in path.name


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> None:
    """Write 16-bit PCM atomically: a killed job leaves no partial file under the final name.

    soundfile writes only the format chunk and samples (no LIST/INFO metadata),
    so nothing of the input's metadata is carried over.
    """
    if fmt not in SUBTYPES:
        raise ValueError(f"unknown audio format {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    data = peak_safe(np.asarray(samples, dtype=np.float32))
    # Encode in memory, then one plain write: libsndfile fsyncs a file it closes
    # (about 6 ms a file here), and the rename below is what makes it safe anyway.
    buffer = io.BytesIO()
    sf.write(buffer, data, int(sample_rate), subtype=SUBTYPES[fmt], format=fmt.upper())
    try:
        tmp.write_bytes(buffer.getbuffer())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
