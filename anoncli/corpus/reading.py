"""Decoding one utterance's audio, whatever its corpus layout stores it as.

Files (WAV, FLAC, NIST SPHERE as in TIMIT, ...) are decoded by soundfile. A
Kaldi `wav.scp` entry that pipes a command is run through bash only when
the corpus was opened with `allow_commands=True` (the layout refuses such
entries otherwise, so `Utterance.command` is never set without consent).
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile as sf

from anoncli.audio import MIN_DURATION_S, Audio, read_audio
from anoncli.corpus.utterance import Utterance
from anoncli.errors import AudioError

# A command that produces one utterance's audio and still runs after this is stuck.
COMMAND_TIMEOUT_S = 600


def _decode_bytes(data: bytes, where: str) -> Audio:
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AudioError(f"{where}: cannot decode the command's output ({reason})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{where}: the command produced no samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{where}: contains NaN or infinite samples")
    if mono.shape[0] / rate < MIN_DURATION_S:
        raise AudioError(f"{where}: too short ({mono.shape[0] / rate:.3f} s < {MIN_DURATION_S} s)")
    return Audio(np.ascontiguousarray(mono, dtype=np.float32), int(rate))


def run_command(utt: Utterance) -> bytes:
    where = f"{utt.path} ({utt.utt_id})"
    try:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", utt.command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AudioError(f"{where}: command ran longer than {COMMAND_TIMEOUT_S} s") from None
    except OSError as err:
        raise AudioError(f"{where}: cannot run command ({err.strerror or err})") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(f"{where}: command exited with {done.returncode}" + (f": {detail[-1]}" if detail else ""))
    return done.stdout


def read_utterance_audio(utt: Utterance) -> Audio:
    """The job engine and the evaluation read every utterance through this one function."""
    if utt.command is not None:
        return _decode_bytes(run_command(utt), f"{utt.path} ({utt.utt_id})")
    return read_audio(utt.path)
