"""Probes are plugins: one class plus one registry line reaches the report, the table, the gate and --probes."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synth_audio import make_corpus
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import AnoncliError
from anoncli.evaluation import probes as probe_registry
from anoncli.evaluation.feature_probes import default_probes
from anoncli.evaluation.probes import Probe, ProbeResult, fmt


class LoudnessProbe(Probe):
    """A made-up probe: the anonymized/original duration per utterance, from the extraction pass."""

    kind = "loudness"
    needs = frozenset({"pairs"})
    table_rank = 5
    gate_aliases = {"loud": "loudness"}

    def expected(self) -> dict:
        return {"ratio_mean": float("nan")}

    def run(self, ctx) -> ProbeResult:
        ratio = ctx.data.anonymized.durations / ctx.data.original.durations
        return ProbeResult(
            {"ratio_mean": float(np.nanmean(ratio))}, {"loudness.ratio": ratio}, notes=["loudness: a test probe"]
        )

    @classmethod
    def table_rows(cls, key, entry):
        return [("loudness ratio (mean)", "", fmt(entry["ratio_mean"], 3), "")]


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(probe_registry.PROBES, "loudness", f"{__name__}:LoudnessProbe")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


def test_a_registered_probe_runs_and_reaches_summary_table_gate_and_scores(registered, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=2, duration_s=0.5)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(corpus),
            str(corpus),
            "--out",
            str(out),
            "--probes",
            "loudness",
            "--gate",
            "loud.ratio_mean>=0.99",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["probes"] == ["loudness"]
    assert summary["loudness"]["ratio_mean"] == pytest.approx(1.0)
    assert "loudness: a test probe" in summary["notes"]
    assert "loudness ratio (mean)" in result.stdout
    assert "loudness.ratio" in pd.read_parquet(out / "scores.parquet").columns
    assert "loudness" in summary["timings_s"]


def test_an_unknown_figure_of_a_registered_probe_is_refused_before_the_run(registered, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_speaker=2, duration_s=0.5)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(corpus),
            str(corpus),
            "--out",
            str(tmp_path / "r"),
            "--probes",
            "loudness",
            "--gate",
            "loud.nothing>=1",
        ],
    )
    # (the CLI's main() turns this error into exit code 2 and one line on stderr)
    assert isinstance(result.exception, AnoncliError) and "loudness.ratio_mean" in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_methods_declare_their_representation_probes():
    frame = pd.DataFrame({"output_path": [None], "features_path": ["features/a.npy"]})
    from anoncli.methods import REGISTRY, method_class

    for name in REGISTRY:
        cls = method_class(name)
        expected = list(cls.feature_probes) or ["utility:gender", "attacker:speaker|gender"]
        assert default_probes(name, True, frame) == expected
    assert default_probes("not-a-method", True, frame) == ["utility:gender", "attacker:speaker|gender"]


def test_evaluation_code_names_no_method():
    from anoncli.methods import REGISTRY

    root = Path(probe_registry.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for name in REGISTRY:
            assert f'"{name}' not in text and f"'{name}" not in text, (path.name, name)
