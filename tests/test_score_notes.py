"""A per-utterance score that cannot be computed is NaN with its reason, never a stand-in number."""

import math
import pickle

import numpy as np
import pyarrow as pa
import pytest
from synth_audio import voiced

from anoncli.scoring import signal_metrics
from anoncli.scoring.quick_scores import NOTES_COLUMN, SCORE_COLUMNS, QuickScorer

RATE = 16000


@pytest.fixture(scope="module")
def voice():
    return voiced(1.5, RATE, f0=140.0, seed=3)


def test_silent_pairs_are_nan_with_a_note(voice):
    silence = np.zeros_like(voice)
    for function in (signal_metrics.stoi, signal_metrics.f0_correlation):
        both = function(silence, silence, RATE)
        assert math.isnan(both) and both.note == "silent original"
        output = function(voice, silence, RATE)
        assert math.isnan(output) and output.note == "silent output"
    level = signal_metrics.level_change_db(voice, 1e-6 * voice)
    assert math.isnan(level) and level.note == "silent output"


def test_short_pairs_are_nan_with_a_note(voice):
    short = voice[: RATE // 10]
    assert signal_metrics.stoi(short, short, RATE).note == "too short"
    assert signal_metrics.f0_correlation(short[:500], short[:500], RATE).note == "too short"
    empty = signal_metrics.duration_ratio(0.0, 1.0)
    assert math.isnan(empty) and empty.note == "empty original"


def test_real_values_have_no_note(voice):
    scores = signal_metrics.pair_scores(voice, 0.5 * voice, RATE)
    assert set(scores) == set(signal_metrics.PAIR_SCORES)
    assert all(value.note is None and math.isfinite(value) for value in scores.values())
    assert scores["level_change_db"] == pytest.approx(-6.02, abs=0.01)
    assert scores["duration_ratio"] == 1.0 and scores["stoi"] > 0.99 and scores["f0_r"] > 0.95
    assert signal_metrics.score_notes(scores) is None


def test_scores_travel_as_floats():
    score = signal_metrics.missing("unvoiced output")
    again = pickle.loads(pickle.dumps(score))
    assert math.isnan(again) and again.note == "unvoiced output"
    table = pa.Table.from_pylist(
        [{"f0_r": score}, {"f0_r": signal_metrics.Score(0.5)}], schema=pa.schema([pa.field("f0_r", pa.float64())])
    )
    assert math.isnan(table["f0_r"][0].as_py()) and table["f0_r"][1].as_py() == 0.5
    notes = signal_metrics.score_notes({"stoi": signal_metrics.missing("too short"), "f0_r": score, "x": 1.0})
    assert notes == "stoi: too short; f0_r: unvoiced output"


def test_quick_scorer_notes_a_silent_pair_instead_of_scoring_it(voice):
    scorer = QuickScorer()
    silence = np.zeros_like(voice)
    row = scorer.score(silence, RATE, silence, RATE)
    assert set(row) == set(SCORE_COLUMNS) | {NOTES_COLUMN}
    assert all(math.isnan(row[c]) for c in SCORE_COLUMNS if c != "duration_ratio")
    assert row["duration_ratio"] == 1.0
    assert "link_cosine: silent original" in row[NOTES_COLUMN] and "stoi: silent original" in row[NOTES_COLUMN]
    real = scorer.score(voice, RATE, 0.5 * voice, RATE)
    assert real[NOTES_COLUMN] is None
    assert (
        real["link_cosine"] > 0.9 and real["f0_r"] > 0.95 and real["level_change_db"] == pytest.approx(-6.02, abs=0.01)
    )


def test_evaluate_skips_and_counts_missing_scores(tmp_path, monkeypatch):
    import json

    import pandas as pd
    import soundfile as sf
    from typer.testing import CliRunner

    from anoncli.cli.app import app

    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))
    original, anonymized = tmp_path / "orig", tmp_path / "anon"
    rows = ["file_name,speaker"]
    for index, (speaker, f0) in enumerate((("a", 210.0), ("b", 115.0))):
        for folder in (original, anonymized):
            (folder / speaker).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            rel = f"{speaker}/{speaker}_{i}.wav"
            wave = voiced(0.8, RATE, f0 * (1 + 0.03 * i), seed=10 * index + i)
            sf.write(original / rel, wave, RATE)
            sf.write(anonymized / rel, np.zeros_like(wave) if rel == "a/a_0.wav" else wave, RATE)
            rows.append(f"{rel},{speaker}")
    (original / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(original),
            str(anonymized),
            "--out",
            str(out),
            "--probes",
            "signal,linkability",
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out / "scores.parquet").set_index("source_path")
    silent = scores.loc["a/a_0.wav"]
    assert np.isnan(silent["link.cosine"]) and np.isnan(silent["signal.stoi"]) and np.isnan(silent["signal.f0_r"])
    assert (
        "link.cosine: silent output" in silent["score_notes"] and "signal.stoi: silent output" in silent["score_notes"]
    )
    assert scores.drop(index="a/a_0.wav")["score_notes"].isna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["signal"]["stoi"] == pytest.approx(1.0, abs=1e-3)  # the mean of the three scored pairs
    assert summary["signal"]["stoi_missing"] == 1 and summary["signal"]["f0_r_missing"] == 1
    assert summary["linkability"]["cosine_missing"] == 1
    assert summary["linkability"]["cosine_mean"] == pytest.approx(1.0, abs=1e-3)
