"""ASR in evaluate: decoding on an executor gives the serial result, and original hypotheses are cached."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from anoncli.corpus.utterance import Utterance
from anoncli.evaluation import asr


class CountingRecogniser:
    name = "counting-test"

    def __init__(self):
        self.calls: list[int] = []

    def transcribe(self, wave16k: np.ndarray) -> str:
        self.calls.append(len(wave16k))
        return "one two" if len(wave16k) % 2 == 0 else "one"


def _pairs(tmp_path: Path, n: int = 6):
    pairs = []
    for i in range(n):
        original, anonymized = tmp_path / f"o{i}.wav", tmp_path / f"a{i}.wav"
        sf.write(original, np.zeros(1600 + 2 * i), 16000)
        sf.write(anonymized, np.zeros(1601 + 2 * i), 16000)
        pairs.append((Utterance(f"u{i}", original, original.name), anonymized))
    return pairs


def test_executor_matches_serial_and_original_side_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))
    recogniser = CountingRecogniser()
    monkeypatch.setattr(asr, "_recogniser", lambda spec: recogniser)
    pairs = _pairs(tmp_path)
    texts, languages, valid = ["one two"] * 6, ["en"] * 6, np.ones(6, bool)

    serial = asr.run_asr(pairs, texts, languages, valid, progress=False)
    assert len(recogniser.calls) == 12  # both sides decoded once
    assert serial[0]["original"]["WER"] == 0.0 and serial[0]["anonymized"]["WER"] == 50.0

    recogniser.calls.clear()
    with ThreadPoolExecutor(2) as pool:
        parallel = asr.run_asr(pairs, texts, languages, valid, progress=False, executor=pool)
    assert len(recogniser.calls) == 6  # the original side came from the cache
    assert parallel[0] == serial[0]
    assert list(parallel[1]["asr.anonymized.hyp"]) == list(serial[1]["asr.anonymized.hyp"])

    recogniser.calls.clear()
    asr.run_asr(pairs, texts, languages, valid, progress=False, use_cache=False)
    assert len(recogniser.calls) == 12


def _voice(f0: float, seed: int, seconds: float = 1.5, sr: int = 16000) -> np.ndarray:
    """A vibrato harmonic tone with a syllable-rate envelope and a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return 0.1 * x + 0.01 * np.random.default_rng(seed).normal(size=t.size)


def test_pocketsphinx_hypothesis_does_not_depend_on_the_files_decoded_before():
    target = _voice(120.0, 1)
    fresh = asr.PocketSphinxRecogniser(None, False).transcribe(target)
    assert fresh  # a non-empty hypothesis, so that the comparison below means something
    reused = asr.PocketSphinxRecogniser(None, False)
    reused.transcribe(0.5 * np.random.default_rng(2).normal(size=32000))
    reused.transcribe(_voice(250.0, 3))
    assert reused.transcribe(target) == fresh
    # the state behind it: the cepstral mean after decoding `target` is that of a fresh decoder
    first = asr.PocketSphinxRecogniser(None, False)
    first.transcribe(target)
    assert reused.decoder.get_cmn() == first.decoder.get_cmn()
