"""Decoding one utterance's audio, whatever its corpus layout stores it as.

Files (WAV, FLAC, NIST SPHERE as in TIMIT, ...) are decoded by soundfile. A
Kaldi `wav.scp` entry that pipes a command is run through bash only when
the corpus was opened with `allow_commands=True` (the layout refuses such
entries otherwise, so `Utterance.command` is never set without consent).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import NamedTuple

from anoncli.audio import Audio, decode_audio_bytes, read_audio
from anoncli.corpus.utterance import Utterance
from anoncli.errors import AudioError

# A command that produces one utterance's audio and still runs after this is stuck.
COMMAND_TIMEOUT_S = 600


def run_command(utt: Utterance) -> bytes:
    """The stdout of a wav.scp piped command (`bash -o pipefail -c`), normally WAV bytes.

    Raises AudioError naming the file when the command cannot start, exits non-zero
    or runs past COMMAND_TIMEOUT_S (600 s).
    """
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


def read_utterance_audio(utt: Utterance, channel: int | None = None) -> Audio:
    """The job engine and the evaluation read every utterance through this one function.

    `channel` (1-based) picks one channel of a multichannel file instead of the mono mixdown.
    """
    if utt.command is not None:
        return decode_audio_bytes(run_command(utt), f"{utt.path} ({utt.utt_id}): the command's output", channel)
    return read_audio(utt.path, channel)


class SourceStamp(NamedTuple):
    """What identifies the bytes of an input file: size (bytes), modification time (ns) and SHA-256 (hex)."""

    size: int
    mtime_ns: int
    sha256: str


def source_stamp(utt: Utterance) -> SourceStamp | None:
    """The stamp of an utterance's input file now; None for a piped command or a file that cannot be read."""
    if utt.command is not None:
        return None
    # os-level calls: a third of the time of open()/read() on corpora of many small files
    try:
        fd = os.open(utt.path, os.O_RDONLY)
    except OSError:
        return None
    try:
        stat = os.fstat(fd)  # the size and time of the bytes hashed
        digest = hashlib.sha256()
        while block := os.read(fd, 1 << 20):
            digest.update(block)
    except OSError:
        return None
    finally:
        os.close(fd)
    return SourceStamp(stat.st_size, stat.st_mtime_ns, digest.hexdigest())


def input_changed(utt: Utterance, recorded: SourceStamp) -> bool:
    """Whether the input's bytes differ from `recorded`: a size change says so at once, an equal size and
    time says no, and a new time with the same size is decided by the SHA-256 (a copied corpus keeps its bytes)."""
    if utt.command is not None:
        return False
    try:
        stat = os.stat(utt.path)
    except OSError:
        return False  # gone since the walk: reading it will fail and say so
    if stat.st_size != recorded.size:
        return True
    if stat.st_mtime_ns == recorded.mtime_ns:
        return False
    now = source_stamp(utt)
    return now is not None and now.sha256 != recorded.sha256
