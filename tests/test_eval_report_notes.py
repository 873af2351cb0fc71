"""What `anoncli evaluate` tells beside its figures: pairs left unscored (silent, too short), an attribute
attacker that cannot learn its label on original audio, and the gate's verdict in report.html."""

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from synth_audio import SPEAKERS, make_corpus, voiced
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.evaluation.attribute import ProbeSpec, learnability_note, run_attribute


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


def test_unscored_pairs_are_noted_and_the_gate_is_in_the_report(tmp_path):
    original = make_corpus(tmp_path / "orig", per_speaker=2, duration_s=0.8)
    gender, f0, formants = SPEAKERS["spk_a"]
    sf.write(original / "spk_a" / "spk_a_short.wav", voiced(0.1, 16000, f0, formants, seed=9), 16000, subtype="PCM_16")
    sf.write(original / "spk_b" / "spk_b_quiet.wav", np.zeros(12800, np.float32), 16000, subtype="PCM_16")
    with open(original / "metadata.csv", "a", newline="") as handle:
        csv.writer(handle).writerows(
            [["spk_a/spk_a_short.wav", "spk_a", gender, "word"], ["spk_b/spk_b_quiet.wav", "spk_b", "male", "word"]]
        )
    anonymized = tmp_path / "anon"
    shutil.copytree(original, anonymized, ignore=shutil.ignore_patterns("metadata.csv"))
    out = tmp_path / "rep"
    args = ["evaluate", str(original), str(anonymized), "--out", str(out), "--probes", "linkability"]
    result = CliRunner().invoke(app, [*args, "--bootstrap", "0", "--gate", "link.passthrough<=100"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    unscored = [n for n in summary["notes"] if n.startswith("signal/link/asv:")]
    assert len(unscored) == 1, summary["notes"]
    assert "2 of 8 pairs not scored (1 silent, 1 too short" in unscored[0]
    assert "spk_a_short (too short)" in unscored[0] and "spk_b_quiet (silent original)" in unscored[0]
    assert unscored[0] in result.stderr
    page = (out / "report.html").read_text()
    assert "2 of 8 pairs not scored" in page
    assert "<h2>Gate: passed</h2>" in page and "link.passthrough&lt;=100" in page
    assert summary["meta"]["gate"]["passed"] is True


def _attribute(separation: float):
    rng = np.random.default_rng(0)
    speakers = [f"s{i}" for i in range(12) for _ in range(4)]
    labels = ["female" if int(s[1:]) % 2 else "male" for s in speakers]
    x = rng.standard_normal((len(speakers), 6))
    x[:, 0] += separation * np.array([1.0 if label == "female" else -1.0 for label in labels])
    spec = ProbeSpec("gender", ["female", "male"])
    summary, _, _ = run_attribute(spec, labels, speakers, x, x, np.ones(len(speakers), bool), n_boot=50)
    return summary


def test_an_attacker_that_cannot_learn_on_original_audio_is_noted():
    note = learnability_note("gender", _attribute(0.0))
    assert note is not None and note.startswith("gender: the attacker does not learn the label on original audio (")
    assert "against chance 50 %" in note and "--attacker-data" in note
    assert learnability_note("gender", _attribute(4.0)) is None
