"""evaluate's vad probe: silero-vad's speech fractions and its speech-presence AUC, where the corpus allows it."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from synth_audio import SPEAKERS, make_corpus, voiced

from anoncli.evaluation.runner import EvaluateConfig, evaluate
from anoncli.evaluation.vad import FRAME, speech_fraction, speech_probabilities
from anoncli.mixtures import make_mixtures, synthesize_events

RATE = 16000
EXAMPLE_SPEECH = Path(__file__).resolve().parents[1] / "examples" / "corpus" / "slt" / "slt_01.wav"
SIDE_KEYS = {"speech_fraction_mean", "speech_fraction_mean_with_speech", "speech_fraction_mean_without_speech", "auc"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def _tone(seconds: float, hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def test_silero_calls_speech_like_signals_speech_and_noise_tones_and_silence_not():
    probs = speech_probabilities(np.zeros(RATE, dtype=np.float32))
    assert probs.shape == (-(-RATE // FRAME),) and np.all((probs >= 0) & (probs <= 1))
    synthetic = [
        speech_fraction(voiced(0.5, RATE, f0, formants, seed=i))
        for i, (_, f0, formants) in enumerate(SPEAKERS.values())
    ]
    others = [
        speech_fraction(w)
        for w in (
            _noise(0.5, 0),
            _noise(1.0, 1),
            _tone(0.5, 440),
            _tone(1.0, 1000),
            np.zeros(RATE // 2, dtype=np.float32),
        )
    ]
    assert min(synthetic) > max(others), (synthetic, others)
    assert max(others) < 0.05
    real, rate = sf.read(EXAMPLE_SPEECH, dtype="float32")  # a flite voice of the example corpus (16 kHz)
    assert rate == RATE and speech_fraction(real) > 0.5


def _presence_corpus(root: Path, speech: bool) -> Path:
    """Two clips with speech (speech-like pulses) and two without (noise, a tone) per speaker; `speech` yes/no.

    With speech=False the clips with speech are replaced by noise: a perfect speech remover's output.
    """
    rows = []
    for index, (speaker, (_, f0, formants)) in enumerate(SPEAKERS.items()):
        (root / speaker).mkdir(parents=True, exist_ok=True)
        clips = [("yes", voiced(0.5, RATE, f0 * (1 + 0.03 * i), formants, seed=10 * index + i)) for i in range(2)]
        clips += [("no", _noise(0.5, 100 + index)), ("no", _tone(0.5, 300 + 200 * index))]
        for i, (label, wave) in enumerate(clips):
            rel = f"{speaker}/{speaker}_{i}.wav"
            sf.write(root / rel, wave if speech or label == "no" else _noise(0.5, 200 + 10 * index + i), RATE)
            rows.append({"file_name": rel, "speaker": speaker, "speech": label})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_vad_section_scores_and_table_on_a_corpus_with_a_speech_label(tmp_path):
    original = _presence_corpus(tmp_path / "original", speech=True)
    removed = _presence_corpus(tmp_path / "removed", speech=False)
    result = evaluate(
        EvaluateConfig(
            original=original,
            anonymized=removed,
            out=tmp_path / "report",
            n_boot=0,
            probes=["vad"],
            progress=False,
            print_table=False,
            gate="vad.auc<=0.6",
        )
    )
    assert result.exit_code == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    vad = summary["vad"]
    assert vad["model"].startswith("silero-vad 6.") and vad["label"] == "speech"
    assert (vad["n"], vad["n_with_speech"], vad["n_without_speech"], vad["left_out_train"]) == (12, 6, 6, 0)
    assert set(vad["original"]) == set(vad["anonymized"]) == SIDE_KEYS
    # silero hears the speech-like clips in the original and nothing once they are gone
    assert vad["original"]["auc"] == pytest.approx(1.0)
    assert vad["original"]["speech_fraction_mean_with_speech"] > vad["original"]["speech_fraction_mean_without_speech"]
    assert vad["anonymized"]["auc"] == pytest.approx(0.5)
    assert vad["anonymized"]["speech_fraction_mean_with_speech"] < 0.05
    assert summary["meta"]["gate"]["conditions"][0]["figure"] == "vad.anonymized.auc"
    assert "silero-vad" in summary["meta"]["attackers"]["vad"]["text"]
    scores = pd.read_parquet(tmp_path / "report" / "scores.parquet")
    fractions = scores["vad.original.speech_fraction"].to_numpy()
    assert np.all((fractions >= 0) & (fractions <= 1))
    assert fractions[scores["speech"] == "yes"].min() > fractions[scores["speech"] == "no"].max()
    assert (tmp_path / "report" / "plots" / "attacker_roc.png").is_file()


def test_on_mixtures_the_default_run_includes_vad_and_leaves_out_the_training_split(tmp_path):
    speech = make_corpus(tmp_path / "speech", per_speaker=3, duration_s=0.5)
    events = synthesize_events(tmp_path / "events", per_class=6, duration_s=0.5, classes=("tone", "clicks"), seed=1)
    mixtures = make_mixtures(speech, events, tmp_path / "mix", duration_s=0.5, test_fraction=0.5, seed=4)
    meta = pd.read_csv(mixtures / "metadata.csv")
    test = meta[meta["split"] == "test"]
    result = evaluate(
        EvaluateConfig(
            original=mixtures, anonymized=mixtures, out=tmp_path / "report", n_boot=0, progress=False, print_table=False
        )
    )
    vad = result.summary["vad"]
    assert "vad" in result.summary["meta"]["probes"]
    assert vad["n"] == len(test) and vad["left_out_train"] == len(meta) - len(test)
    assert vad["n_with_speech"] == int((test["speech"] == "yes").sum()) > 0 and vad["n_without_speech"] > 0
    for side in ("original", "anonymized"):
        assert set(vad[side]) == SIDE_KEYS and 0.0 <= vad[side]["auc"] <= 1.0
        assert vad[side]["speech_fraction_mean_with_speech"] >= vad[side]["speech_fraction_mean_without_speech"]
    assert vad["original"] == vad["anonymized"]  # the same audio on both sides


def test_without_a_speech_label_vad_is_left_out_with_a_note_unless_named(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=2, duration_s=0.5)
    default = evaluate(
        EvaluateConfig(
            original=corpus, anonymized=corpus, out=tmp_path / "default", n_boot=0, progress=False, print_table=False
        )
    )
    assert "vad" not in default.summary and "vad" not in default.summary["meta"]["probes"]
    assert any(note.startswith("vad: not probed (no speech-presence label") for note in default.summary["notes"])
    named = evaluate(
        EvaluateConfig(
            original=corpus,
            anonymized=corpus,
            out=tmp_path / "named",
            n_boot=0,
            probes=["vad"],
            progress=False,
            print_table=False,
        )
    )
    vad = named.summary["vad"]
    assert vad["label"] is None and vad["n"] == 6 and "n_with_speech" not in vad
    assert set(vad["original"]) == {"speech_fraction_mean"} and 0.0 < vad["original"]["speech_fraction_mean"] <= 1.0


def test_beside_the_trained_attacker_on_the_shipped_speech_remover(tmp_path, monkeypatch):
    from anoncli.evaluation.probes import table_rows
    from anoncli.jobs.engine import AnonymizeConfig, run_anonymize

    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))  # a fresh clone: the shipped model
    speech = make_corpus(tmp_path / "speech", per_speaker=4, duration_s=1.0)
    events = synthesize_events(tmp_path / "events", per_class=6, duration_s=1.0, classes=("tone", "clicks"), seed=2)
    mixtures = make_mixtures(speech, events, tmp_path / "mix", duration_s=1.0, test_fraction=0.5, seed=3)
    out = tmp_path / "anon"
    run_anonymize(
        AnonymizeConfig(corpus=mixtures, out=out, method="rdalm", params={"emit": "both"}, score=False, progress=False)
    )
    result = evaluate(
        EvaluateConfig(
            original=mixtures,
            anonymized=out,
            out=tmp_path / "report",
            n_boot=0,
            probes=["features", "vad"],
            progress=False,
            print_table=False,
        )
    )
    trained, vad = result.summary["features"]["attacker_audio"]["speech"], result.summary["vad"]
    assert vad["n"] == trained["n"] > 0 and vad["left_out_train"] > 0  # the same held-out clips
    assert 0.0 <= vad["anonymized"]["auc"] <= 1.0 and 0.0 <= vad["original"]["auc"] <= 1.0
    assert set(result.summary["meta"]["attackers"]) >= {"vad"}
    figures = [row[0] for row in table_rows(result.summary)]  # the printed table: VAD rows right after the features'
    first_vad = figures.index(f"VAD speech AUC ({vad['model']})")
    assert "features attacker on audio: speech" in figures[:first_vad]
    assert all(f.startswith("features") for f in figures[:first_vad]) and figures[first_vad:][1].startswith("VAD")
