"""Audio decoding, resampling and atomic encoding.

Decoding is done with soundfile (torchaudio.load needs FFmpeg, which a fresh
machine may not have). Resampling on the CPU uses libsoxr (python-soxr):
its cost is bounded for any pair of rates, where a polyphase resampler built
from the rates' greatest common divisor blows up for rates such as 44101 Hz.
torchaudio resamples only tensors that already live on a GPU.
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from anoncli.atomic import atomic_write_bytes, temp_path_for
from anoncli.errors import AudioError, environment_failure

if TYPE_CHECKING:
    pass

# Shorter than one 20 ms analysis window at any rate we work at: such a file
# carries no speech a method could transform.
MIN_DURATION_S = 0.02
# Sample rates outside this range carry no speech band (below) or are not
# audio recordings (above); a header that declares one is corrupt.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
# libsndfile's frame count of a file whose header does not give its length is SF_COUNT_MAX; none this large is real.
_UNKNOWN_FRAMES = 1 << 62
# Frames read per call from files whose length libsndfile cannot know in
# advance (GSM 6.10, G.72x, NMS ADPCM, ...: "non-seekable" codecs).
_BLOCK_FRAMES = 1 << 16
# The mono mixdown of C uncorrelated channels keeps 1/C of their mean energy;
# below this share of that, the channels cancel each other (one is inverted).
MIXDOWN_LOSS_SHARE = 0.25
# libsoxr quality: "HQ" is 20-bit precision, band-limited to 95 % of the lower Nyquist.
SOXR_QUALITY = "HQ"
# torchaudio's kernel has one phase per step of the reduced rate ratio (44101 -> 16000: 44101
# phases, gigabytes); a GPU tensor with a ratio that fine is resampled by libsoxr on the CPU.
MAX_GPU_PHASES = 4096

SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16"}
# Write failures that concern one file's name, not the output folder (a name too long for, or
# not allowed on, the output file system): that file fails, the job goes on.
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ}


@dataclass
class Audio:
    """Mono float32 samples in [-1, 1] (nominally), their sample rate, and remarks on the decode.

    `notes` holds one-line remarks a user should see (e.g. a mixdown that
    cancelled the channels); `channels` is the file's channel count.
    """

    samples: np.ndarray
    sample_rate: int
    channels: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Length in seconds: `len(samples) / sample_rate`."""
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


def header_frames(frames: int) -> int | None:
    """A frame count as libsndfile reports it from a header, or None when the header leaves the length open.

    A FLAC written to a pipe has STREAMINFO total_samples 0 (the writer
    could not seek back to fill it in); libsndfile then reports SF_COUNT_MAX
    frames (2**63 - 1), which read as 160 billion hours at 16 kHz.
    """
    return frames if 0 <= frames < _UNKNOWN_FRAMES else None


def _blocks(handle: sf.SoundFile) -> Iterator[np.ndarray]:
    """The frames of an open file as float32 (frames, channels) blocks of _BLOCK_FRAMES, to its end."""
    if header_frames(handle.frames) is None:
        # libFLAC cannot seek in a stream of unknown length, and soundfile seeks after every read of a
        # file it calls seekable: read it as the stream it is.
        handle.seekable = lambda: False
    while True:
        block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if block.shape[0]:
            yield block
        if block.shape[0] < _BLOCK_FRAMES:
            return


def _read_all(handle: sf.SoundFile) -> np.ndarray:
    """Every frame as float32 (frames, channels); block by block when the codec cannot seek or the header
    does not give the length."""
    if handle.seekable() and header_frames(handle.frames) is not None:
        return handle.read(dtype="float32", always_2d=True)
    blocks = list(_blocks(handle))
    if not blocks:
        return np.zeros((0, handle.channels), dtype=np.float32)
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


def audio_length(path: str | os.PathLike) -> tuple[int, float]:
    """(sample rate in Hz, duration in seconds) of an audio file, from its header.

    Where the header leaves the length open (`header_frames`: a FLAC
    written to a pipe) the frames are counted by
    decoding the file block by block, never holding it whole. Raises
    soundfile's errors (LibsndfileError, RuntimeError) for a file it cannot
    open or decode.
    """
    with sf.SoundFile(_native(path)) as handle:
        frames = header_frames(handle.frames)
        if frames is None:
            frames = sum(block.shape[0] for block in _blocks(handle))
        return int(handle.samplerate), frames / float(handle.samplerate)


def _native(path: str | os.PathLike) -> bytes:
    """A path as the bytes the file system holds: soundfile encodes a str name strictly, which fails for a name
    Python decoded with surrogate escapes (bytes that are not valid in the file system encoding)."""
    return os.fsencode(path)


def _path_problem(path: str, where: str) -> str | None:
    """Why a path cannot be opened, in words (broken link, link loop, permission, folder), or None."""
    try:
        info = os.stat(path)
    except OSError as err:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            if err.errno == errno.ELOOP:
                return f"{where}: symbolic link loop ({path} -> {target} leads back to itself)"
            return f"{where}: broken symbolic link (points to {target}, which does not exist)"
        if err.errno == errno.ELOOP:
            return f"{where}: symbolic link loop in the path"
        return f"{where}: cannot read ({err.strerror or err})"
    if os.path.isdir(path):
        return f"{where}: is a folder, not an audio file"
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        return f"{where}: cannot read ({err.strerror or err})"
    if info.st_size == 0:
        return f"{where}: empty file"
    return None


def _select_channel(data: np.ndarray, channel: int | None, where: str) -> tuple[np.ndarray, list[str]]:
    """One channel (1-based), or the mono mixdown with a note when the channels cancel each other."""
    count = data.shape[1]
    if count == 1:
        return data[:, 0], []
    if channel is not None:
        if channel < 1 or channel > count:
            raise AudioError(f"{where}: has {count} channels; --channel {channel} does not exist (1..{count})")
        return data[:, channel - 1], []
    mono = data.mean(axis=1)
    # Energies in float64 sums (not np.dot: BLAS threads would spin in every worker).
    per_channel = np.sum(np.square(data, dtype=np.float64), axis=0)
    mean_channel = float(np.mean(per_channel))
    kept = float(np.sum(np.square(mono, dtype=np.float64)))
    notes = []
    if mean_channel > 0 and np.isfinite(mean_channel) and kept < MIXDOWN_LOSS_SHARE * mean_channel / count:
        loudest = int(np.argmax(per_channel)) + 1
        notes.append(
            f"the mono mixdown of the {count} channels keeps {100 * kept / mean_channel:.1f} % of their energy "
            f"(the channels cancel out, e.g. one is phase-inverted); pass --channel {loudest} to use one channel"
        )
    return mono, notes


def _decode(source, where: str, channel: int | None = None) -> Audio:
    """Open once, check the header, read, pick a channel or mix down, validate; one-line AudioError on any problem."""
    is_path = isinstance(source, (str, Path))
    try:
        with sf.SoundFile(_native(source) if is_path else source) as handle:
            _check_not_truncated(where, handle.extra_info)
            rate = handle.samplerate
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise AudioError(
                    f"{where}: unsupported sample rate {rate} Hz (expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
                )
            data = _read_all(handle)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, MemoryError) as err:
        problem = _path_problem(os.fspath(source), where) if is_path else None
        if problem is not None:
            raise AudioError(problem) from None
        if isinstance(err, MemoryError):
            raise AudioError(f"{where}: cannot decode audio (too large to hold in memory)") from None
        if isinstance(err, OSError) and not isinstance(err, sf.LibsndfileError):
            raise AudioError(f"{where}: cannot read ({err.strerror or err})") from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if is_path:  # soundfile names the file as it was given, bytes (see _native): show it as text
            reason = reason.replace(repr(_native(source)), repr(os.fsdecode(source)))
        raise AudioError(f"{where}: cannot decode audio ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{where}: no samples")
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf are refused just below
        samples, notes = _select_channel(data, channel, where)
    if not np.isfinite(samples).all():
        raise AudioError(f"{where}: contains NaN or infinite samples")
    if samples.shape[0] / rate < MIN_DURATION_S:
        raise AudioError(f"{where}: too short ({samples.shape[0] / rate:.3f} s < {MIN_DURATION_S} s)")
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), int(rate), int(data.shape[1]), notes)


def read_audio(path: str | os.PathLike, channel: int | None = None) -> Audio:
    """Decode a file to mono float32, raising AudioError with a one-line reason.

    Several channels are mixed down (a note in `Audio.notes` says when they
    cancel each other), or `channel` (1-based) picks one; a mono file is
    read as it is whatever `channel` says.
    """
    return _decode(os.fspath(path), os.fspath(path), channel)


def decode_audio_bytes(data: bytes, where: str, channel: int | None = None) -> Audio:
    """Decode audio held in memory (e.g. a command's output); `where` names it in errors."""
    if not data:
        raise AudioError(f"{where}: no data")
    return _decode(io.BytesIO(data), where, channel)


@lru_cache(maxsize=32)
def _gpu_resampler(orig: int, new: int):
    import torch
    import torchaudio

    return torchaudio.transforms.Resample(orig, new, dtype=torch.float32)


def _soxr_last_axis(array: np.ndarray, orig: int, new: int) -> np.ndarray:
    """libsoxr over the last axis of a float32/float64 array of any rank."""
    import soxr

    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    lead = array.shape[:-1]
    if array.size == 0:
        return np.zeros(lead + (int(round(array.shape[-1] * new / orig)),), dtype=array.dtype)
    if array.ndim == 1:
        return soxr.resample(np.ascontiguousarray(array), orig, new, quality=SOXR_QUALITY)
    # soxr takes (frames, channels): every leading index is one channel.
    frames = np.ascontiguousarray(array.reshape(-1, array.shape[-1]).T)
    out = soxr.resample(frames, orig, new, quality=SOXR_QUALITY)
    return np.ascontiguousarray(out.T).reshape(lead + (out.shape[0],))


def resample(samples, orig: int, new: int):
    """Resample the last axis from `orig` to `new` Hz.

    `samples`: a numpy array or a torch tensor of any rank (time last); the
    result has the same type, dtype and device, with round(n * new / orig)
    samples. On the CPU this is libsoxr (bounded time and memory for any pair
    of rates, the same bits for the same input on the same machine); a tensor
    on a GPU goes through torchaudio's band-limited sinc resampler there
    (ceil(n * new / orig) samples), unless the reduced rate ratio would need
    more than MAX_GPU_PHASES kernel phases: then libsoxr on the CPU.
    """
    orig, new = int(orig), int(new)
    if orig <= 0 or new <= 0:
        raise ValueError(f"sample rates must be positive (got {orig} -> {new})")
    if orig == new:
        return samples
    if isinstance(samples, np.ndarray):
        return _soxr_last_axis(samples, orig, new)
    import torch

    if samples.device.type != "cpu" and max(orig, new) // math.gcd(orig, new) <= MAX_GPU_PHASES:
        resampler = _gpu_resampler(orig, new).to(samples.device)
        return resampler(samples.to(torch.float32)).to(samples.dtype)
    work = torch.float64 if samples.dtype == torch.float64 else torch.float32
    out = _soxr_last_axis(samples.detach().to(work).cpu().numpy(), orig, new)
    return torch.from_numpy(out).to(device=samples.device, dtype=samples.dtype)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """(n,) samples cut or zero-padded at the end to exactly `length` samples (the array itself when it fits).

    Resampling to another rate and back rounds the length twice
    (22051 samples at 22050 Hz -> 16001 at 16 kHz -> 22052), so a
    length-preserving method's output is fitted to its input's length.
    """
    samples = np.asarray(samples)
    if len(samples) == length:
        return samples
    if len(samples) > length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), dtype=samples.dtype)])


def output_intact(path: str | os.PathLike) -> bool:
    """Whether a file this program wrote is still whole, from its first bytes and size (microseconds a file).

    WAV: the RIFF/WAVE header and a RIFF size that matches the file's (a
    truncated or overwritten file fails); FLAC: its `fLaC` mark; `.npy`
    feature files: numpy's magic string. Any other file: not empty.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return False
    suffix = path.suffix.lower()
    if suffix == ".wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE" and int.from_bytes(head[4:8], "little") + 8 == size
    if suffix == ".flac":
        return head[:4] == b"fLaC"
    if suffix == ".npy":
        return head[:6] == b"\x93NUMPY"
    return size > 0


def peak_safe(samples: np.ndarray, peak: float = 0.999) -> np.ndarray:
    """Scale down only when the signal would clip; leave it untouched otherwise."""
    return _peak_safe(samples, peak)[0]


def _peak_safe(samples: np.ndarray, peak: float = 0.999) -> tuple[np.ndarray, float]:
    """`peak_safe` and the peak it found (|x| max, full scale 1), from one pass over the samples."""
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top > peak:
        return samples * (peak / top), top
    return samples, top


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> float:
    """Write 16-bit PCM atomically: a killed job leaves no partial file under the final name.

    soundfile writes only the format chunk and samples (no LIST/INFO metadata),
    so nothing of the input's metadata is carried over. An OS-level failure
    (disk full, no permission, read-only file system, a missing or non-folder
    parent) raises EnvironmentFailure naming `path` and the cause; a name the
    output file system refuses (too long, invalid characters) raises
    AudioError, a failure of this one file. Returns the peak |sample| of
    `samples` (full scale 1): above 0.999 the file holds them scaled down
    to 0.999 (`peak_safe`) rather than clipped.
    """
    if fmt not in SUBTYPES:
        raise ValueError(f"unknown audio format {fmt!r}")
    path = Path(path)
    data, top = _peak_safe(np.asarray(samples, dtype=np.float32))
    # Encode in memory, then one plain write: libsndfile fsyncs a file it closes
    # (about 6 ms a file here), and the rename below is what makes it safe anyway.
    buffer = io.BytesIO()
    sf.write(buffer, data, int(sample_rate), subtype=SUBTYPES[fmt], format=fmt.upper())
    try:
        atomic_write_bytes(path, buffer.getbuffer())
    except OSError as err:
        # The temporary sibling is our business; the user knows the final name.
        where = path if err.filename in (None, os.fspath(temp_path_for(path))) else err.filename
        if err.errno in _NAME_ERRNOS:
            raise AudioError(
                f"{where}: cannot write this file name ({err.strerror or err}) on the output file system"
            ) from None
        raise environment_failure(err, where) from None
    return top
