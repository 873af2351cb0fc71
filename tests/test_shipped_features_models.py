"""The shipped Siamese and RDAL-M models, and the stable evaluation keys of feature outputs.

Synthetic audio and feature vectors only (no corpus under ../shared is read).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from synth_audio import make_corpus

from anoncli import modelstore
from anoncli.evaluation.feature_probes import evaluate_features, label_probes, resolve_labels, stable_summary
from anoncli.evaluation.gate import flatten
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.manifest.reader import read_manifest
from anoncli.methods import MethodOptions, create_method

PRETRAINED = Path(modelstore.__file__).resolve().parent / "pretrained"
METHODS = ("siamese", "rdalm")
LICENCES = {"LibriSpeech": "CC BY 4.0", "RAVDESS": "CC BY-NC-SA 4.0", "UrbanSound8K": "CC BY-NC 3.0"}


def _part(output, name: str):
    """One part ("audio" / "features") of a method's output for one utterance."""
    return getattr(output, name) if hasattr(output, name) else output


@pytest.fixture
def no_local_store(tmp_path, monkeypatch):
    """An empty local model store, as on a fresh clone: only the shipped models can be found."""
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))


@pytest.mark.parametrize("name", METHODS)
def test_shipped_card_is_complete(name):
    folder = PRETRAINED / name
    assert (folder / "model.safetensors").stat().st_size < 20 * 1024 * 1024
    card = json.loads((folder / "card.json").read_text())
    assert card["method"] == name and card["model"]["classes"] and card["model"]["config"]
    data = card["data"]
    for key in ("corpus", "licence", "train_speakers", "excluded_speakers"):
        assert data[key], key
    corpora = {"LibriSpeech", "RAVDESS"} | ({"UrbanSound8K"} if name == "rdalm" else set())
    for corpus in corpora:
        assert LICENCES[corpus] in data["licence"][corpus]
    assert card["command"].startswith("anoncli train") and isinstance(card["seed"], int)
    assert card["labels"]["utility"] and card["labels"]["private"]
    assert card["heldout"] and card["validation"]


def test_shipped_siamese_loads_and_writes_one_vector_per_utterance(no_local_store):
    method = create_method("siamese", MethodOptions())
    assert str(method.checkpoint_path).endswith("model.safetensors")
    waves = [torch.randn(12000) * 0.1, torch.randn(30000) * 0.1]
    vectors = [np.asarray(_part(o, "features")) for o in method.process(waves, [{}, {}])]
    assert [v.shape for v in vectors] == [(method.net.feature_dim,)] * 2 and all(np.isfinite(v).all() for v in vectors)
    assert method.train_speakers, "training speakers are recorded so evaluate leaves them out"


def test_shipped_rdalm_loads_and_masks(no_local_store):
    wave = torch.randn(16000) * 0.1
    audio = create_method("rdalm", MethodOptions())
    masked = torch.as_tensor(_part(audio.process([wave], [{}])[0], "audio"))
    assert masked.shape == wave.shape and float(masked.pow(2).sum()) <= float(wave.pow(2).sum()) * 1.01
    feats = np.asarray(
        _part(create_method("rdalm", MethodOptions(extra={"emit": "features"})).process([wave], [{}])[0], "features")
    )
    assert feats.ndim == 1 and np.isfinite(feats).all()


def _feature_rows(tmp_path: Path) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    (tmp_path / "features").mkdir(exist_ok=True)
    for speaker, gender in {"f1": "female", "f2": "female", "m1": "male", "m2": "male"}.items():
        for i in range(12):
            vec = rng.standard_normal(6).astype(np.float32)
            vec[0] += 4.0 if gender == "female" else -4.0
            rel = f"features/{speaker}_{i}.npy"
            np.save(tmp_path / rel, vec)
            rows.append(
                {
                    "utt_id": f"{speaker}_{i}",
                    "output_path": rel,
                    "status": "ok",
                    "method": "siamese",
                    "speaker": speaker,
                    "gender": gender,
                    "emotion": ["calm", "angry"][i % 2],
                }
            )
    return rows


def test_stable_keys_of_a_features_output(tmp_path):
    rows = _feature_rows(tmp_path)
    labels = resolve_labels("siamese")
    assert labels == {"utility": "gender", "private": "speaker", "within": "gender"}
    _, raw = evaluate_features(None, tmp_path, pd.DataFrame(rows), seed=0, labels=labels)
    flat = flatten({"features": stable_summary(raw, labels)})
    for key in (
        "utility.gender.accuracy",
        "utility.gender.chance",
        "attacker.speaker.accuracy",
        "attacker.speaker.chance",
        "attacker.speaker.auc",
        "attacker.speaker.normalised",
    ):
        assert f"features.{key}" in flat, key
    assert flat["features.utility.gender.accuracy"] > 0.95
    assert 0.0 <= flat["features.attacker.speaker.auc"] <= 1.0  # 2 speakers per gender, no speaker cue
    # --private / --utility choose other columns: an attacker over all items, no within-group split
    other = resolve_labels("siamese", utility="speaker", private="emotion")
    assert other == {"utility": "speaker", "private": "emotion", "within": None}
    _, raw = evaluate_features(None, tmp_path, pd.DataFrame(rows), seed=0, labels=other)
    assert set(stable_summary(raw, other)["attacker"]) == {"emotion"}


def test_rdalm_labels_and_the_older_speech_present_column():
    labels = resolve_labels("rdalm")
    assert labels["utility"] == "event" and labels["private"] == "speech" and not labels["within"]
    frame = pd.DataFrame(
        {
            "output_path": ["a.wav", "b.wav"],
            "features_path": ["a.npy", "b.npy"],
            "event": ["x", "y"],
            "speech_present": [1, 0],
        }
    )
    probes = label_probes(labels, True, frame, ("attacker-audio:speech", "sdr"))
    assert probes == [
        "utility:event",
        "attacker:speech_present",
        "attacker-audio:speech_present",
        "attacker-unmasked:speech_present",
        "sdr",
    ]
    raw = {
        "attacker:speech_present": {"accuracy": 0.6, "chance": 0.5, "auc": 0.55, "n": 10},
        "attacker-audio:speech_present": {"accuracy": 0.7, "chance": 0.5, "auc": 0.75, "n": 10},
        "sdr": {"sdr_db_mean": 8.0, "n": 10},
    }
    flat = flatten(stable_summary(raw, labels))
    assert flat["attacker.speech.auc"] == 0.55 and flat["attacker_audio.speech.auc"] == 0.75
    assert flat["sdr.sdr_db_mean"] == 8.0


def test_evaluate_reports_the_documented_keys_for_shipped_siamese_features(tmp_path, no_local_store):
    from anoncli.evaluation.runner import EvaluateConfig, evaluate

    corpus = make_corpus(tmp_path / "corpus", per_speaker=6, duration_s=0.6)
    out = tmp_path / "anon"
    run_anonymize(AnonymizeConfig(corpus=corpus, out=out, method="siamese", progress=False))
    assert all(r["status"] == "ok" for r in read_manifest(out).to_pylist())
    result = evaluate(
        EvaluateConfig(
            original=corpus,
            anonymized=out,
            out=tmp_path / "report",
            n_boot=0,
            progress=False,
            print_table=False,
            gate="features.attacker.speaker.auc<=1,features.utility.gender.accuracy>=0",
        )
    )
    features = result.summary["features"]
    assert result.exit_code == 0
    assert features["labels"] == {"utility": "gender", "private": "speaker", "within": "gender"}
    assert {"accuracy", "chance"} <= set(features["utility"]["gender"])
    assert {"accuracy", "chance", "auc"} <= set(features["attacker"]["speaker"])


def test_evaluate_of_feature_outputs_runs_the_feature_probes_only_and_adds_no_false_notes(no_local_store, tmp_path):
    from typer.testing import CliRunner

    from anoncli.cli.app import app

    corpus = make_corpus(tmp_path / "corpus", per_speaker=4, duration_s=0.8)
    out = tmp_path / "anon"
    run_anonymize(AnonymizeConfig(corpus=corpus, out=out, method="siamese", score=False, progress=False))
    result = CliRunner().invoke(
        app, ["evaluate", str(corpus), str(out), "--out", str(tmp_path / "report"), "--bootstrap", "0", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["meta"]["probes"] == ["features"] and summary["meta"]["methods"] == ["siamese"]
    assert not any("not probed" in note for note in summary["notes"]), summary["notes"]  # 3 speakers, 2 genders
