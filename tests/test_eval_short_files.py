"""Files of a few hundred milliseconds: the resemblyzer embedding takes them whole (too short for its silence
trimming to matter), and `anoncli evaluate` scores the rest of the corpus and notes why the pair has no cosine."""

import csv
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from synth_audio import SPEAKERS, make_corpus, voiced
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.scoring.embeddings import VAD_WINDOW, ResemblyzerBackend, _trim_long_silences


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("windows", [5, 6, 7, 10])
def test_trimming_a_voiced_wave_of_few_windows_keeps_it_whole(windows):
    # every 30-ms window of a steady voiced wave is speech: the smoothed (8 windows), dilated mask keeps each
    # of them, also when the wave has fewer windows than the dilation's structure (7)
    wave = voiced(1.0, 16000, 120.0, seed=windows)[4000 : 4000 + windows * VAD_WINDOW]
    trimmed = _trim_long_silences(wave)
    assert len(trimmed) == len(wave)
    np.testing.assert_array_equal(trimmed, wave)


def test_trimming_drops_a_long_pause_between_speech():
    speech = voiced(1.0, 16000, 120.0, seed=1)[2000 : 2000 + 20 * VAD_WINDOW]
    wave = np.concatenate([speech, np.zeros(40 * VAD_WINDOW, np.float32), speech])
    trimmed = _trim_long_silences(wave)
    assert len(trimmed) % VAD_WINDOW == 0
    assert 2 * len(speech) <= len(trimmed) < len(wave)


@pytest.mark.parametrize("windows", [1, 2, 3])
def test_trimming_a_wave_of_one_to_three_windows_does_not_fail(windows):
    wave = voiced(1.0, 16000, 120.0, seed=windows)[4000 : 4000 + windows * VAD_WINDOW + 100]
    trimmed = _trim_long_silences(wave)
    assert len(trimmed) % VAD_WINDOW == 0 and len(trimmed) <= len(wave)


def test_a_wave_of_120_ms_is_embedded():
    backend = ResemblyzerBackend()
    short = voiced(0.12, 16000, 210.0, (850, 1600, 2900), seed=3)
    embeddings = backend.embed([short, voiced(1.0, 16000, 110.0, seed=4)])
    assert embeddings.shape == (2, 256)
    assert np.all(np.isfinite(embeddings))
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_evaluate_scores_a_corpus_with_a_100_ms_file(tmp_path):
    original = make_corpus(tmp_path / "orig", per_speaker=2, duration_s=0.8)
    gender, f0, formants = SPEAKERS["spk_a"]
    sf.write(original / "spk_a" / "spk_a_short.wav", voiced(0.1, 16000, f0, formants, seed=9), 16000, subtype="PCM_16")
    with open(original / "metadata.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["spk_a/spk_a_short.wav", "spk_a", gender, "word"])
    anonymized = tmp_path / "anon"
    shutil.copytree(original, anonymized, ignore=shutil.ignore_patterns("metadata.csv"))
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(original), str(anonymized), "--out", str(out), "--probes", "linkability", "--bootstrap", "0"],
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out / "scores.parquet").set_index("utt_id")
    short = [u for u in scores.index if u.endswith("spk_a_short")]
    assert len(short) == 1
    assert np.isnan(scores.loc[short[0], "link.cosine"])
    assert "link.cosine: too short" in scores.loc[short[0], "score_notes"]
    others = scores.drop(index=short)
    assert np.all(np.isfinite(others["link.cosine"]))


def test_asv_trials_leave_out_a_too_short_pair(tmp_path):
    """A 0.1 s file is embedded (no crash) but, like its link cosine, it takes part in no ASV trial."""
    original = make_corpus(tmp_path / "orig", per_speaker=3, duration_s=0.8)
    gender, f0, formants = SPEAKERS["spk_a"]
    sf.write(original / "spk_a" / "spk_a_short.wav", voiced(0.1, 16000, f0, formants, seed=9), 16000, subtype="PCM_16")
    with open(original / "metadata.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["spk_a/spk_a_short.wav", "spk_a", gender, "word"])
    anonymized = tmp_path / "anon"
    shutil.copytree(original, anonymized, ignore=shutil.ignore_patterns("metadata.csv"))
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        app, ["evaluate", str(original), str(anonymized), "--out", str(out), "--probes", "asv", "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    trials = pd.read_parquet(out / "trials.parquet")
    named = " ".join(str(v) for column in trials.columns if trials[column].dtype == object for v in trials[column])
    assert "spk_a_short" not in named and len(trials) > 0
