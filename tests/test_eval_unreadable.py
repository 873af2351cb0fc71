"""`anoncli evaluate` with broken anonymized files: each one is counted and named, and a gate does not pass over it."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from eval_helpers import corpus_and_copy
from synth_audio import make_corpus
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import EXIT_GATE


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


def run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def break_files(folder, names):
    """One NaN sample, a text file and random bytes in place of three audio files."""
    nan_file, text_file, bytes_file = (folder / name for name in names)
    wave, rate = sf.read(nan_file, dtype="float32")
    wave[100] = np.nan
    sf.write(nan_file, wave, rate, subtype="FLOAT")
    text_file.write_text("not audio at all\n")
    bytes_file.write_bytes(np.random.default_rng(0).bytes(4000))


BROKEN = ("spk_a/spk_a_0.wav", "spk_b/spk_b_0.wav", "spk_c/spk_c_0.wav")


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("unreadable")
    original, anonymized = corpus_and_copy(root)
    break_files(anonymized, BROKEN)
    return original, anonymized, root


def test_unreadable_outputs_are_counted_named_and_fail_the_gate(broken):
    original, anonymized, root = broken
    result = run(
        original,
        anonymized,
        "--out",
        root / "rep",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--quiet",
        "--gate",
        "signal.stoi>=0.9",
    )
    assert result.exit_code == EXIT_GATE, result.output
    assert "3 of 6 pairs have a file that cannot be read (--allow-missing 0)" in result.stderr
    for name in BROKEN:
        assert name in result.stderr
    summary = json.loads((root / "rep" / "summary.json").read_text())
    meta = summary["meta"]
    assert meta["unreadable_anonymized"] == 3 and meta["unreadable_original"] == 0
    assert sorted(why.split(":")[0] for why in meta["unreadable_anonymized_files"]) == sorted(
        str(anonymized / name) for name in BROKEN
    )
    assert "NaN" in " ".join(meta["unreadable_anonymized_files"])
    assert summary["signal"]["stoi_missing"] == 3 and summary["signal"]["f0_r_missing"] == 3
    scores = pd.read_parquet(root / "rep" / "scores.parquet").set_index("utt_id")
    for name in BROKEN:
        note = scores.loc[name[:-4], "score_notes"]
        assert note.startswith("audio: unreadable anonymized file") and name in note
    assert scores["score_notes"].isna().sum() == 3  # the good pairs have no note


def test_allow_missing_and_gating_the_missing_counts(broken):
    original, anonymized, root = broken
    allowed = run(
        original,
        anonymized,
        "--out",
        root / "allowed",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--quiet",
        "--gate",
        "signal.stoi>=0.9",
        "--allow-missing",
        "3",
    )
    assert allowed.exit_code == 0, allowed.output
    assert "3 of 6 anonymized files cannot be read" in allowed.stderr  # still named
    counted = run(
        original,
        anonymized,
        "--out",
        root / "counted",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--quiet",
        "--gate",
        "signal.stoi_missing<=0",
        "--allow-missing",
        "3",
    )
    assert counted.exit_code == EXIT_GATE
    assert "signal.stoi_missing<=0: measured 3" in counted.stderr


def test_an_anoncli_output_overwritten_with_garbage_fails_the_gate(tmp_path):
    original = make_corpus(tmp_path / "orig", per_speaker=2, duration_s=0.8)
    out = tmp_path / "anon"
    made = CliRunner().invoke(
        app, ["anonymize", str(original), "--out", str(out), "--method", "identity", "--no-progress"]
    )
    assert made.exit_code == 0, made.output
    (out / "spk_b" / "spk_b_1.wav").write_bytes(np.random.default_rng(1).bytes(3000))
    result = run(
        original,
        out,
        "--out",
        tmp_path / "rep",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--quiet",
        "--gate",
        "signal.stoi>=0.9",
    )
    assert result.exit_code == EXIT_GATE, result.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["meta"]["pairing"] == "manifest"
    assert summary["meta"]["unreadable_anonymized"] == 1
    assert "spk_b_1.wav" in summary["meta"]["unreadable_anonymized_files"][0]
    assert summary["signal"]["stoi_missing"] == 1
