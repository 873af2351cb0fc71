"""Per-utterance scores of `anoncli anonymize`: on by default, NaN with a reason when missing, cached, summarised."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_audio import voiced
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.manifest.reader import read_manifest
from anoncli.manifest.schema import SCORE_VALUE_COLUMNS

RATE = 16000
SCORED = [
    "link_cosine",
    "asv_score",
    "gender_p_orig",
    "gender_p_anon",
    "emotion_p_orig",
    "emotion_p_anon",
    "stoi",
    "f0_r",
    "duration_ratio",
    "level_change_db",
]
# speaker -> (gender, emotion per utterance, f0, formants)
VOICES = {"f1": ("female", 215.0, (850, 1650, 2900)), "m1": ("male", 110.0, (650, 1100, 2450))}
EMOTIONS = ["anger", "neutral", "sadness"]  # EmoDB's names: the emodb emotion attacker knows them


def write_corpus(root: Path, silent: str | None = None, labels: bool = True) -> Path:
    lines = ["file_name,speaker,gender,emotion"]
    for index, (speaker, (gender, f0, formants)) in enumerate(VOICES.items()):
        (root / speaker).mkdir(parents=True, exist_ok=True)
        for i, emotion in enumerate(EMOTIONS):
            rel = f"{speaker}/{speaker}_{i}.wav"
            wave = voiced(1.0, RATE, f0 * (1 + 0.04 * i), formants, seed=10 * index + i)
            sf.write(root / rel, np.zeros_like(wave) if rel == silent else wave, RATE, subtype="PCM_16")
            lines.append(f"{rel},{speaker},{gender},{emotion}")
    if labels:
        (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def anonymize(*args) -> None:
    result = CliRunner().invoke(app, ["anonymize", *map(str, args), "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output


def rows_by_id(out: Path) -> dict[str, dict]:
    return {row["utt_id"]: row for row in read_manifest(out).to_pylist()}


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", silent="m1/m1_2.wav")


def test_defaults_write_every_score_or_its_reason(corpus, tmp_path):
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "mcadams")  # no flags: scores are on
    rows = rows_by_id(out)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows.values())
    for utt, row in rows.items():
        for column in SCORED:
            value = row[column]
            assert value is not None, (utt, column)
            if math.isnan(value):
                assert row["score_notes"] and f"{column}: " in row["score_notes"], (utt, column, row["score_notes"])
    voiced_row = rows["f1/f1_0"]
    assert voiced_row["score_notes"] is None
    assert 0.0 < voiced_row["stoi"] <= 1.0 and voiced_row["f0_r"] >= 0.5 and voiced_row["duration_ratio"] == 1.0
    assert -1.0 <= voiced_row["link_cosine"] <= 1.0 and -1.0 <= voiced_row["asv_score"] <= 1.0
    record = json.loads((out / "run.json").read_text())["scores"]
    assert record["enabled"] and record["attackers"]["gender"]["attacker"] == "gender"
    assert record["attackers"]["emotion"]["attacker"] == "emotion-emodb"
    assert record["attackers"]["gender"]["held_out_speakers"]["accuracy"] > 0.9
    stoi = record["distributions"]["stoi"]
    assert stoi["n"] + stoi["nan"] == 6 and stoi["p5"] <= stoi["p50"] <= stoi["p95"]


def test_silent_input_scores_nan_with_its_reason(corpus, tmp_path):
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "identity")
    row = rows_by_id(out)["m1/m1_2"]
    for column in ("link_cosine", "asv_score", "gender_p_orig", "gender_p_anon", "stoi", "f0_r", "level_change_db"):
        assert math.isnan(row[column]), column
    notes = row["score_notes"]
    assert "link_cosine: silent original" in notes and "stoi: silent original" in notes
    assert "gender_p_orig: silent original" in notes and "asv_score: silent output" in notes
    assert row["duration_ratio"] == 1.0
    # the speaker's other utterances still enrol: the silent one is left out of the mean
    assert np.isfinite(rows_by_id(out)["m1/m1_0"]["asv_score"])


def test_asv_score_needs_speaker_labels(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", labels=False)  # plain folder: no speakers, no labels
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "identity")
    for row in rows_by_id(out).values():
        assert math.isnan(row["asv_score"]) and "asv_score: no speaker label" in row["score_notes"]
        assert "gender_p_orig: no label" in row["score_notes"]
        assert row["emotion_p_orig"] is None  # the corpus has no emotion column: not scored at all
        assert np.isfinite(row["link_cosine"]) and np.isfinite(row["stoi"])
    notes = json.loads((out / "run.json").read_text())["scores"]["notes"]
    assert any("no speaker labels" in n for n in notes)


def test_identity_keeps_the_voice_and_the_labels(corpus, tmp_path):
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "identity")
    row = rows_by_id(out)["f1/f1_1"]
    assert row["link_cosine"] > 0.99 and row["stoi"] > 0.99 and row["f0_r"] > 0.99
    assert abs(row["level_change_db"]) < 0.1
    assert row["gender_p_orig"] == pytest.approx(row["gender_p_anon"], abs=0.02)
    assert row["asv_score"] > 0.5


def test_unknown_labels_are_skipped_with_notes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    metadata = (corpus / "metadata.csv").read_text().replace("sadness", "bewildered")
    (corpus / "metadata.csv").write_text(metadata)
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "identity")
    row = rows_by_id(out)["f1/f1_2"]
    assert math.isnan(row["emotion_p_orig"])
    assert "emotion_p_orig: label 'bewildered' unknown to the attacker" in row["score_notes"]
    notes = json.loads((out / "run.json").read_text())["scores"]["notes"]
    assert any("'bewildered' (2)" in n for n in notes)


def test_attacker_probabilities_are_probabilities():
    from anoncli.jobs.scores import load_attackers
    from anoncli.scoring.attackers import N_FEATURES, Attacker, choose

    attackers, card = load_attackers()
    assert {a.name for a in attackers} == {"gender", "emotion-ravdess", "emotion-emodb"}
    assert all(
        e["held_out_speakers"]["accuracy"] > e["held_out_speakers"]["chance_majority"] for e in card["attackers"]
    )
    x = np.random.default_rng(0).normal(size=(20, N_FEATURES)).astype(np.float32)
    for attacker in attackers:
        p = attacker.probabilities(x)
        assert p.shape == (20, len(attacker.classes)) and np.all((p >= 0) & (p <= 1))
        assert np.allclose(p.sum(axis=1), 1.0)
        truth = attacker.p_true(x, [attacker.classes[0]] * 19 + ["nonsense"])
        assert np.all((truth[:19] >= 0) & (truth[:19] <= 1)) and np.isnan(truth[19])
    # a binary model stored as two softmax rows gives the logistic probabilities
    binary = Attacker("b", "gender", ["female", "male"], np.zeros(2), np.ones(2), [[-1.0, 0.0], [1.0, 0.0]], [0, 0])
    assert binary.probabilities(np.array([[0.5, 3.0]]))[0, 1] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert choose("emotion", ["happy", "sad", "calm"], attackers).attacker == "emotion-ravdess"
    assert choose("emotion", ["Anger", "boredom", None], attackers).attacker == "emotion-emodb"
    assert choose("gender", ["M", "f"], attackers).unknown == {}


def test_second_method_reuses_the_cached_originals(corpus, tmp_path, monkeypatch):
    from anoncli.jobs import scores
    from anoncli.scoring.quick_scores import QuickScorer

    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))
    scores._STATE.clear()  # a fresh worker: nothing in memory
    described = []
    original = QuickScorer.describe

    def counting(self, waves):
        described.append(len(waves))
        return original(self, waves)

    monkeypatch.setattr(QuickScorer, "describe", counting)
    anonymize(corpus, "--out", tmp_path / "first", "--method", "identity")
    assert sum(described) == 12  # 6 originals + 6 outputs
    entries = list((tmp_path / "cache" / "originals").rglob("*.npz"))
    assert len(entries) == 6
    scores._STATE.clear()  # a new process would start with an empty memory cache
    described.clear()
    anonymize(corpus, "--out", tmp_path / "second", "--method", "mcadams")
    assert sum(described) == 6  # only the new outputs: the originals come from the cache
    assert scores._STATE["cache"].reads == 6 and scores._STATE["cache"].writes == 0
    first, second = rows_by_id(tmp_path / "first"), rows_by_id(tmp_path / "second")
    assert first["f1/f1_0"]["gender_p_orig"] == pytest.approx(second["f1/f1_0"]["gender_p_orig"], abs=1e-6)


def test_no_score_leaves_the_columns_empty(corpus, tmp_path):
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "identity", "--no-score")
    for row in rows_by_id(out).values():
        assert all(row[c] is None for c in SCORE_VALUE_COLUMNS) and row["score_notes"] is None
    assert json.loads((out / "run.json").read_text())["scores"] == {"enabled": False}


def test_inspect_shows_the_summary_and_the_worst_outputs(corpus, tmp_path):
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "mcadams")
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["scores"]["stoi"]["n"] == 5 and info["scores"]["stoi"]["nan"] == 1
    result = runner.invoke(app, ["inspect", str(out), "--worst", "2", "--by", "stoi", "--format", "json"])
    assert result.exit_code == 0, result.output
    worst = json.loads(result.output)["worst"]
    rows = [r for r in rows_by_id(out).values() if not math.isnan(r["stoi"])]
    lowest = sorted(rows, key=lambda r: r["stoi"])[:2]
    assert [w["utt_id"] for w in worst] == [r["utt_id"] for r in lowest]
    result = runner.invoke(app, ["inspect", str(out), "--worst", "1"])  # default --by asv.link: highest link_cosine
    assert result.exit_code == 0 and "link_cosine" in result.output
    from anoncli.errors import InputError

    result = runner.invoke(app, ["inspect", str(out), "--worst", "1", "--by", "nonsense"])
    assert isinstance(result.exception, InputError) and "no such score column" in str(result.exception)


def test_evaluate_reuses_the_manifest_scores(corpus, tmp_path, monkeypatch):
    from anoncli.scoring import signal_metrics

    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "mcadams")

    def no_stoi(*args, **kwargs):
        raise AssertionError("STOI computed again")

    monkeypatch.setattr(signal_metrics, "stoi", no_stoi)
    report = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(corpus),
            str(out),
            "--out",
            str(report),
            "--probes",
            "signal,linkability",
            "--bootstrap",
            "0",
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((report / "summary.json").read_text())
    assert summary["meta"]["reused_manifest_scores"] == 6
    import pandas as pd

    scores = pd.read_parquet(report / "scores.parquet").set_index("source_path")
    manifest = read_manifest(out).to_pandas().set_index("source_path")
    for column, ours in (("stoi", "signal.stoi"), ("f0_r", "signal.f0_r"), ("link_cosine", "link.cosine")):
        assert np.allclose(scores[ours], manifest.loc[scores.index, column], equal_nan=True)
    assert "signal.stoi: silent original" in scores.loc["m1/m1_2.wav", "score_notes"]


def test_feature_outputs_get_their_applicable_scores_and_notes(tmp_path):
    from anoncli.corpus import open_corpus
    from anoncli.jobs import scores

    corpus = open_corpus(write_corpus(tmp_path / "corpus"))
    plan = scores.plan_scores(corpus, corpus.utterances, use_cache=False)
    utt = corpus.utterances[0]
    wave, rate = sf.read(utt.path, dtype="float32")
    prepared = scores.prepare(plan, [(utt, wave, rate)])
    row: dict = {}
    warnings = scores.finish(plan, prepared, [(utt, row, None, None)])  # a method that wrote features only
    assert warnings == []
    assert 0.0 <= row["gender_p_orig"] <= 1.0 and 0.0 <= row["emotion_p_orig"] <= 1.0
    for column in ("link_cosine", "asv_score", "gender_p_anon", "emotion_p_anon", "stoi", "f0_r"):
        assert math.isnan(row[column]) and f"{column}: feature output (no audio)" in row["score_notes"]


def test_vectorised_stoi_matches_pystoi():
    from pystoi import stoi as reference

    from anoncli.scoring.stoi import stoi

    clean = voiced(2.0, 10000, 130.0, seed=4).astype(np.float64)
    noisy = clean + 0.05 * np.random.default_rng(1).standard_normal(len(clean))
    assert stoi(clean, noisy) == pytest.approx(reference(clean, noisy, 10000), abs=1e-10)


def test_score_columns_are_reserved_label_names():
    from anoncli.corpus import RESERVED

    # a label column named like a score is renamed label_<name> instead of being overwritten
    assert set(SCORE_VALUE_COLUMNS) | {"score_notes"} <= RESERVED


def test_a_scoring_failure_keeps_the_outputs_and_says_why(corpus, tmp_path, monkeypatch):
    from anoncli.jobs import scores
    from anoncli.scoring.quick_scores import QuickScorer

    def broken(self, waves):
        raise RuntimeError("encoder weights unreadable")

    monkeypatch.setattr(QuickScorer, "describe", broken)
    scores._STATE.clear()
    out = tmp_path / "out"
    anonymize(corpus, "--out", out, "--method", "identity")
    for row in rows_by_id(out).values():
        assert row["status"] == "ok" and row["output_path"]
        assert (
            row["stoi"] is None
            and "scores: not computed (RuntimeError: encoder weights unreadable)" in row["score_notes"]
        )


def test_worst_table_wraps_long_file_names_instead_of_cutting_them():
    """At 80 columns (a log, a pipe) a long file name folds onto more lines; the ranking is the title."""
    from rich.console import Console

    from anoncli.cli.inspect import _worst_table

    name = "speaker_with_a_long_name/session_2026_12_06/utterance_number_0042_take_3"
    rows = [
        {
            "utt_id": name,
            "source_path": name + ".flac",
            "speaker": "speaker_with_a_long_name",
            "by": "link_cosine",
            "value": 0.98765,
        }
    ]
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(_worst_table(rows, "most linkable"))
    text = console.export_text()
    assert "…" not in text and "by link_cosine" in text
    body = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    assert "".join(cells[1].strip() for cells in body) == name
    assert "".join(cells[2].strip() for cells in body) == name + ".flac"
