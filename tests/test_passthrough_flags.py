"""Outputs that keep the original voice (link cosine >= 0.999) are flagged by `evaluate` and fail `inspect --check`."""

import json
import shutil

import pytest
from synth_audio import make_corpus
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import EXIT_GATE
from anoncli.evaluation.linkability import PASSTHROUGH_COSINE, passthrough

COPIED = "spk_b/spk_b_1"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A corpus, its McAdams anonymization (scored) with one output overwritten by its original, and a
    McAdams run with alpha = 0.999 and no high-pass (the input nearly unchanged: every output keeps its voice)."""
    root = tmp_path_factory.mktemp("passthrough")
    corpus = make_corpus(root / "corpus", per_speaker=2, duration_s=0.8)
    for name, extra in (("anon", ()), ("kept", ("--alpha", "0.999", "--param", "highpass=no"))):
        result = cli("anonymize", corpus, "--out", root / name, "--no-progress", "-q", *extra)
        assert result.exit_code == 0, result.output
    shutil.copyfile(corpus / f"{COPIED}.wav", root / "anon" / f"{COPIED}.wav")
    return root, corpus


def test_passthrough_threshold():
    assert passthrough([1.0, PASSTHROUGH_COSINE, 0.998, float("nan")]).tolist() == [True, True, False, False]


def test_evaluate_flags_an_output_copied_from_its_original(runs):
    root, corpus = runs
    result = cli(
        "evaluate",
        corpus,
        root / "anon",
        "--out",
        root / "rep",
        "--probes",
        "linkability",
        "--bootstrap",
        "0",
        "--quiet",
        "--gate",
        "link.passthrough<=0",
    )
    assert result.exit_code == EXIT_GATE, result.output
    assert "1 of 6 outputs keep the original voice" in result.stderr and COPIED in result.stderr
    summary = json.loads((root / "rep" / "summary.json").read_text())
    # the manifest's score was made before the copy: the file as it is now decides
    assert summary["linkability"]["passthrough"] == 1 and summary["linkability"]["passthrough_utts"] == [COPIED]
    assert any("keep the original voice" in note and COPIED in note for note in summary["notes"])
    assert "keep the original voice" in (root / "rep" / "report.html").read_text()


def test_any_gate_fails_on_an_output_that_keeps_the_voice_unless_it_names_a_bound(runs):
    root, corpus = runs
    common = ("--probes", "linkability,signal", "--bootstrap", "0", "--quiet")
    result = cli("evaluate", corpus, root / "anon", "--out", root / "rep2", *common, "--gate", "signal.stoi>=0")
    assert result.exit_code == EXIT_GATE, result.output
    assert "keep the original voice" in result.stderr and "link.passthrough<=1" in result.stderr
    allowed = cli(
        "evaluate",
        corpus,
        root / "anon",
        "--out",
        root / "rep3",
        *common,
        "--gate",
        "signal.stoi>=0,link.passthrough<=1",
    )
    assert allowed.exit_code == 0, allowed.stderr


def test_inspect_check_counts_outputs_that_keep_the_voice(runs):
    root, _ = runs
    kept = cli("inspect", root / "kept", "--check", "--format", "json")
    assert kept.exit_code == 3
    info = json.loads(kept.stdout)
    assert info["passthrough_outputs"] == 6 and not info["complete"] and info["missing"] == 0
    assert "6 output(s) keep the original voice" in kept.stderr
    changed = json.loads(cli("inspect", root / "anon", "--check", "--format", "json").stdout)
    assert changed["passthrough_outputs"] == 0  # McAdams' draws of alpha change every voice


def test_the_identity_control_is_counted_but_not_a_problem(runs):
    root, corpus = runs
    assert cli("anonymize", corpus, "--out", root / "control", "--method", "identity", "-q").exit_code == 0
    check = cli("inspect", root / "control", "--check", "--format", "json")
    assert check.exit_code == 0, check.output
    info = json.loads(check.stdout)
    assert info["passthrough_control_outputs"] == 6 and info["passthrough_outputs"] == 0
