"""`anoncli evaluate` on a corpus with one utterance per speaker: default probes that cannot run are skipped
with a note, a probe named in --probes is refused before any work, and nothing prints a RuntimeWarning."""

import json
import shutil
import subprocess
import sys
import warnings

import pytest
import soundfile as sf
from synth_audio import SPEAKERS, voiced
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import EXIT_GATE, EXIT_USAGE

VOICES = {**SPEAKERS, "spk_d": ("female", 190.0, (800, 1500, 2800))}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def singletons(tmp_path_factory):
    """4 speakers (2 female, 2 male) with one 1-s file each, and an identity copy as ANONYMIZED."""
    root = tmp_path_factory.mktemp("singletons")
    original = root / "orig"
    original.mkdir()
    rows = ["file_name,speaker,gender"]
    for index, (speaker, (gender, f0, formants)) in enumerate(VOICES.items()):
        sf.write(original / f"{speaker}.wav", voiced(1.0, 16000, f0, formants, seed=index), 16000)
        rows.append(f"{speaker}.wav,{speaker},{gender}")
    (original / "metadata.csv").write_text("\n".join(rows) + "\n")
    anonymized = root / "anon"
    shutil.copytree(original, anonymized, ignore=shutil.ignore_patterns("metadata.csv"))
    return original, anonymized, root


def run(*args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    return result, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_default_probes_skip_what_cannot_run(singletons):
    original, anonymized, root = singletons
    result, runtime_warnings = run(original, anonymized, "--out", root / "rep", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    assert not runtime_warnings, [str(w.message) for w in runtime_warnings]
    summary = json.loads((root / "rep" / "summary.json").read_text())
    assert "asv" not in summary["meta"]["probes"] and {"signal", "linkability", "gender"} <= set(
        summary["meta"]["probes"]
    )
    assert any(
        note.startswith("asv: not probed (needs at least 2 speakers with 2 or more utterances")
        for note in summary["notes"]
    )
    assert "asv: not probed" in result.stderr
    # G_VD cannot be computed without two utterances of one speaker: NaN, and the note says why
    assert summary["linkability"]["G_VD"] is None
    assert "each of the 4 speakers has one" in summary["linkability"]["G_VD_note"]
    assert any(note.startswith("linkability: G_VD not computed") for note in summary["notes"])
    assert (root / "rep" / "report.html").is_file()
    gated, _ = run(
        original, anonymized, "--out", root / "gated", "--probes", "linkability", "--quiet", "--gate", "link.G_VD>=-3"
    )
    assert gated.exit_code == EXIT_GATE
    assert "link.G_VD>=-3 (linkability.G_VD): measured not measured (needs a speaker with 2 or more" in gated.stderr


def test_a_named_probe_that_cannot_run_is_refused_before_extraction(singletons):
    original, anonymized, root = singletons
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anoncli",
            "evaluate",
            str(original),
            str(anonymized),
            "--out",
            str(root / "named"),
            "--probes",
            "asv,signal",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_USAGE
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--probes: asv" in lines[0] and "2 or more utterances each" in lines[0], proc.stderr
    assert not (root / "named").exists()  # refused before the extraction


def test_gvd_note_when_speakers_merge():
    import numpy as np

    from anoncli.evaluation.linkability import run_linkability

    rng = np.random.default_rng(0)
    original = rng.standard_normal((6, 8))
    original /= np.linalg.norm(original, axis=1, keepdims=True)
    anonymized = np.tile(original[:1], (6, 1))  # every output the same voice
    summary, _, _ = run_linkability(original, anonymized, ["a", "a", "b", "b", "c", "c"], np.ones(6, bool))
    assert np.isnan(summary["G_VD"]) and "D_diag_aa is 0" in summary["G_VD_note"]
    summary, _, _ = run_linkability(original, original, ["a", "a", "b", "b", "c", "c"], np.ones(6, bool))
    assert summary["G_VD"] == pytest.approx(0.0) and "G_VD_note" not in summary
