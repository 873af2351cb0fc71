"""Gate figures that differ only by case (`asv.OA.EER` in %, `asv.OA.eer` normalised): a failed condition says its
figure's scale, a threshold no figure of that definition can reach is refused before any work, and asking a raw
EER for more than chance is warned about."""

import json
import subprocess
import sys

import pytest
from synth_audio import make_corpus
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import EXIT_GATE, EXIT_USAGE, AnoncliError
from anoncli.evaluation.gate import beyond_chance, describe_scale, flatten, parse_gate

SUMMARY = {
    "asv": {c: {"EER": 20.0, "eer": 40.0, "minDCF": 0.9, "n_target": 12.0} for c in ("OO", "OA", "AA")},
    "gender": {"ignorant": {"GR": 80.0, "gr": 40.0, "acc": 80.0, "auc": 0.8}},
    "asr": {"anonymized": {"WER": 120.0, "Aw": -20.0}},
    "signal": {"stoi": 0.7, "stoi_missing": 0.0, "f0_r": 0.5},
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "condition",
    [
        "asv.OA.EER>=180",
        "asv.eer>100.5",
        "gender.gr>=-1",
        "signal.stoi>=1.5",
        "signal.f0_r>-2",
        "gender.auc>=80",
        "asr.Aw<=101",
        "asv.OA.n_target>=-1",
        "signal.stoi_missing<-0.5",
    ],
)
def test_a_threshold_outside_the_figures_range_is_refused(condition):
    with pytest.raises(AnoncliError, match="outside the range of") as refused:
        parse_gate(condition, SUMMARY, aliases={"asv": "asv.OA", "*": "{head}.ignorant", "asr": "asr.anonymized"})
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "condition",
    [
        "asv.OA.EER>=80",
        "asv.OA.EER<=100",
        "asv.OA.eer>=0",
        "signal.stoi>=-0.2",
        "asr.anonymized.WER<=150",
        "asr.anonymized.Aw>=-50",
        "signal.f0_r>=-1",
        "asv.OA.minDCF<=1",
    ],
)
def test_a_threshold_the_figure_can_reach_is_accepted(condition):
    assert len(parse_gate(condition, SUMMARY, aliases={})) == 1


def test_the_refusal_names_the_case_twin():
    with pytest.raises(AnoncliError) as refused:
        parse_gate("asv.OA.EER>=180", SUMMARY, aliases={})
    assert "0 to 100" in str(refused.value) and "asv.OA.eer is normalised" in str(refused.value)


def test_scale_of_eer_and_EER_differ():
    names = flatten(SUMMARY)
    raw, normalised = describe_scale("asv.OA.EER", names), describe_scale("asv.OA.eer", names)
    assert raw.startswith(" (EER in %, 50 = chance; asv.OA.eer is normalised")
    assert normalised.startswith(" (normalised 0-100") and "asv.OA.EER is EER in %" in normalised
    assert describe_scale("signal.stoi_median", names) == " (STOI, at most 1)"
    assert describe_scale("features.utility:gender.accuracy", names) == ""


def test_asking_a_raw_rate_for_more_than_chance_is_warned():
    names = flatten(SUMMARY)
    conditions = parse_gate("asv.OA.EER>=80,asv.OA.eer>=80,asv.OA.EER<=60,gender.ignorant.GR>55", SUMMARY, aliases={})
    warnings = beyond_chance(conditions, names)
    assert len(warnings) == 2
    assert warnings[0].startswith("--gate 'asv.OA.EER>=80': asv.OA.EER above 50 means an attacker worse than chance")
    assert "asv.OA.eer is normalised" in warnings[0] and "gender.ignorant.gr is normalised" in warnings[1]


def test_evaluate_gate_lines_say_the_scale(tmp_path):
    original = make_corpus(tmp_path / "orig", per_speaker=3, duration_s=0.8)
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "anoncli",
            "evaluate",
            str(original),
            str(original),
            "--out",
            str(tmp_path / "no"),
            "--probes",
            "asv",
            "--gate",
            "asv.OA.EER>=180",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == EXIT_USAGE, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "180 is outside the range of asv.OA.EER, 0 to 100" in lines[0], refused.stderr
    assert not (tmp_path / "no").exists()  # refused before any work
    out = tmp_path / "rep"
    gated = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(original),
            str(original),
            "--out",
            str(out),
            "--probes",
            "asv",
            "--bootstrap",
            "0",
            "--quiet",
            "--gate",
            "asv.OA.EER>=80",
        ],
    )
    assert gated.exit_code == EXIT_GATE, gated.output
    assert "warning: --gate 'asv.OA.EER>=80': asv.OA.EER above 50 means an attacker worse than chance" in gated.stderr
    eer = json.loads((out / "summary.json").read_text())["asv"]["OA"]["EER"]
    assert (
        f"gate failed: asv.OA.EER>=80: measured {eer:.4g} (EER in %, 50 = chance; asv.OA.eer is normalised"
        in gated.stderr
    )


def test_a_figure_equal_to_its_threshold_up_to_rounding_noise_meets_it():
    """gr = 100 - 2|x - 50| comes out as 89.99999999999999 for 45 %: the gate must not fail a printed 90 >= 90."""
    from anoncli.evaluation.gate import check_gate

    summary = {"gender": {"informed": {"gr": 89.99999999999999}, "original": {"GR": 55.00000000000001}}}
    conditions = parse_gate("gender.informed.gr>=90,gender.original.GR<=55", summary, {})
    assert check_gate(conditions, summary) == []
    summary["gender"]["informed"]["gr"] = 89.9999
    assert [cond.text for cond, _ in check_gate(conditions, summary)] == ["gender.informed.gr>=90"]
