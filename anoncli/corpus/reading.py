"""Decoding one utterance's audio, whatever its corpus layout stores it as."""

from __future__ import annotations

from anoncli.audio import Audio, read_audio
from anoncli.corpus.utterance import Utterance


def read_utterance_audio(utt: Utterance) -> Audio:
    """The job engine and the evaluation read every utterance through this one function."""
    return read_audio(utt.path)
