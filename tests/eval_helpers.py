"""Corpora for the `anoncli evaluate` tests: a synthetic corpus and a copy of it standing in for its anonymization."""

import shutil

from synth_audio import make_corpus


def corpus_and_copy(root, per_speaker: int = 2, duration_s: float = 0.8):
    """(ORIGINAL, ANONYMIZED): `synth_audio.make_corpus` under root/orig and its audio copied to root/anon."""
    original = make_corpus(root / "orig", per_speaker=per_speaker, duration_s=duration_s)
    anonymized = root / "anon"
    shutil.copytree(original, anonymized, ignore=shutil.ignore_patterns("metadata.csv"))
    return original, anonymized
