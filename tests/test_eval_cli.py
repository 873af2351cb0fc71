"""`anoncli evaluate` end to end on a synthetic corpus: report files, gate exit codes, report reading."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from synth_audio import voiced
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import EXIT_GATE, EXIT_USAGE, InputError
from anoncli.evaluation import report_io


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    original = root / "orig"
    voices = {
        "f1": ("female", 220, (850, 1600, 2900)),
        "f2": ("female", 190, (800, 1500, 2800)),
        "m1": ("male", 110, (650, 1100, 2450)),
        "m2": ("male", 125, (500, 1500, 2500)),
    }
    rows = ["file_name,speaker,gender,transcript,language"]
    for index, (speaker, (gender, f0, formants)) in enumerate(voices.items()):
        (original / speaker).mkdir(parents=True)
        for i in range(3):
            rel = f"{speaker}/{speaker}_{i}.wav"
            sf.write(original / rel, voiced(0.8, 16000, f0 * (1 + 0.03 * i), formants, seed=10 * index + i), 16000)
            rows.append(f"{rel},{speaker},{gender},ein wort,de")
    (original / "metadata.csv").write_text("\n".join(rows) + "\n")
    anonymized = root / "anon"
    shutil.copytree(original, anonymized, ignore=shutil.ignore_patterns("metadata.csv"))
    return original, anonymized, root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_CACHE", str(tmp_path / "cache"))


def run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_full_default_report(corpora):
    original, anonymized, root = corpora
    out = root / "report"
    result = run(original, anonymized, "--out", out, "--bootstrap", "20")
    assert result.exit_code == 0, result.output
    for name in (
        "scores.parquet",
        "trials.parquet",
        "summary.json",
        "report.html",
        "plots/asv_det.png",
        "plots/attacker_roc.png",
        "plots/confusion_gender.png",
        "plots/privacy_utility.png",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["meta"]["probes"]) >= {"asv", "signal", "linkability", "speaker", "gender"}
    # An identity "anonymization": every condition sees the same embeddings.
    assert summary["asv"]["OO"]["EER"] == pytest.approx(summary["asv"]["OA"]["EER"])
    assert summary["signal"]["stoi"] == pytest.approx(1.0, abs=1e-3)
    assert summary["linkability"]["cosine_mean"] == pytest.approx(1.0, abs=1e-4)
    assert "gr" in summary["gender"]["ignorant"]
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(scores) == 12
    assert {
        "utt_id",
        "speaker",
        "gender",
        "link.cosine",
        "signal.stoi",
        "asv.OA.score",
        "gender.ignorant.p_true",
    } <= set(scores.columns)
    trials = pd.read_parquet(out / "trials.parquet")
    assert set(trials["condition"]) == {"OO", "OA", "AA"} and trials["target"].any() and (~trials["target"]).any()
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # the attackers' protocol heads the report: no other corpus here, a pretrained ASV encoder
    attackers = summary["meta"]["attackers"]
    assert attackers["gender"]["trained_on"]["extra"] is None and "no --attacker-data" in attackers["gender"]["text"]
    assert attackers["asv"]["trained_on"] is None and "pretrained" in attackers["asv"]["family"]
    assert "OA" in attackers["asv"]["attackers"] and "AA" in attackers["asv"]["attackers"]
    page = (out / "report.html").read_text()
    assert page.index("<h2>Attackers</h2>") < page.index("<table>") and "no --attacker-data" in page
    assert "attackers: gender attackers: multinomial logistic regression" in result.stdout
    assert "ASV EER" in result.stdout
    assert any("language de skipped" in note for note in summary["notes"]) and "asr" not in summary
    print(summary["timings_s"])
    # Reading the report back, as `anoncli inspect` does.
    assert report_io.is_report_dir(out) and not report_io.is_report_dir(original)
    assert report_io.load_summary(out)["meta"]["n_pairs"] == 12
    worst = report_io.worst_utterances(out, 3, "asv.link")
    assert len(worst) == 3 and worst[0]["by"] == "link.cosine"
    stoi_worst = report_io.worst_utterances(out, 2, "stoi")
    assert stoi_worst[0]["value"] <= 1.0 + 1e-6
    # Never overwrite a report silently.
    again = run(original, anonymized, "--out", out, "--probes", "signal")
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)


def test_gate_pass_and_fail(corpora):
    original, anonymized, root = corpora
    passed = run(
        original,
        anonymized,
        "--out",
        root / "gate_ok",
        "--probes",
        "signal",
        "--quiet",
        "--gate",
        "signal.stoi>=0.9,signal.lsd_db<1",
    )
    assert passed.exit_code == 0, passed.output
    failed = run(
        original,
        anonymized,
        "--out",
        root / "gate_fail",
        "--probes",
        "signal",
        "--quiet",
        "--gate",
        "signal.stoi>=0.9,signal.f0_r<0.5",
    )
    assert failed.exit_code == EXIT_GATE
    assert "signal.f0_r<0.5" in failed.stderr and "signal.stoi" not in failed.stderr


def test_gate_unknown_name_is_usage_error(corpora):
    original, anonymized, root = corpora
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anoncli",
            "evaluate",
            str(original),
            str(anonymized),
            "--out",
            str(root / "gate_bad"),
            "--probes",
            "signal",
            "--quiet",
            "--gate",
            "signal.nonsense>=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_USAGE
    assert "unknown figure" in proc.stderr and "signal.stoi" in proc.stderr  # lists the valid names
    assert not (root / "gate_bad").exists()  # refused before any work


def test_gate_on_a_probe_that_could_not_run_says_why():
    from anoncli.errors import AnoncliError
    from anoncli.evaluation.gate import parse_gate

    note = "gender: not probed (fewer than 2 classes spoken by 2 or more speakers)"
    with pytest.raises(AnoncliError, match=r"'gender\.gr' cannot be measured on this corpus \(gender: not probed"):
        parse_gate("signal.stoi>=0.5,gender.gr>=90", {"signal": {"stoi": 0.9}}, skipped=[note])
    with pytest.raises(AnoncliError, match="unknown figure 'emotion.gr'"):  # no note for it: the valid names
        parse_gate("emotion.gr>=90", {"signal": {"stoi": 0.9}}, skipped=[note])


def test_gate_aliases():
    from anoncli.evaluation.gate import check_gate, parse_gate

    summary = {
        "asv": {"OA": {"eer": 85.0}},
        "gender": {"ignorant": {"gr": 50.0}},
        "asr": {"anonymized": {"Aw": 70.0}},
        "linkability": {"G_VD": -3.0},
    }
    conditions = parse_gate("asv.eer>=80, gender.gr>=90, asr.Aw>60, link.G_VD<0", summary)
    assert [c.resolved for c in conditions] == [
        "asv.OA.eer",
        "gender.ignorant.gr",
        "asr.anonymized.Aw",
        "linkability.G_VD",
    ]
    assert [c.name for c, _ in check_gate(conditions, summary)] == ["gender.gr"]


def test_trained_ecapa_backend_and_attribute_attacker(corpora, tmp_path):
    """`anoncli train --method asv|attribute` on the tiny corpus, then evaluate with the trained encoder."""
    original, anonymized, root = corpora
    tiny = tmp_path / "tiny.json"
    tiny.write_text(
        json.dumps({"epochs": 1, "batch_size": 8, "crop_s": 0.5, "channels": [32, 32, 32, 32, 96], "lin_neurons": 16})
    )
    runner = CliRunner()
    trained = runner.invoke(
        app, ["train", "--method", "asv", str(original), "--out", str(tmp_path / "asv"), "--config", str(tiny)]
    )
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "asv" / "model.pt").is_file() and (tmp_path / "asv" / "log.parquet").is_file()
    result = run(
        original,
        anonymized,
        "--out",
        tmp_path / "rep",
        "--probes",
        "asv",
        "--quiet",
        "--bootstrap",
        "0",
        "--asv-model",
        tmp_path / "asv",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["asv"]["backend"] == "ecapa:asv" and 0.0 <= summary["asv"]["OO"]["EER"] <= 100.0
    attacker = runner.invoke(
        app, ["train", "--method", "attribute", str(original), "--label", "gender", "--out", str(tmp_path / "att")]
    )
    assert attacker.exit_code == 0, attacker.output
    from anoncli.evaluation.attribute import load_attacker

    head, config = load_attacker(tmp_path / "att")
    assert config["classes"] == ["female", "male"] and head.linear.out_features == 2


def test_pairs_through_an_anonymize_manifest(corpora, tmp_path):
    """An `anoncli anonymize` output folder is paired through its manifest, not by file name."""
    original, _, _ = corpora
    out = tmp_path / "anon"
    made = CliRunner().invoke(
        app, ["anonymize", str(original), "--out", str(out), "--method", "identity", "--no-score", "--no-progress"]
    )
    assert made.exit_code == 0, made.output
    result = run(
        original,
        out,
        "--out",
        tmp_path / "rep",
        "--probes",
        "signal",
        "--quiet",
        "--bootstrap",
        "0",
        "--gate",
        "signal.duration_ratio>=0.99",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["meta"]["pairing"] == "manifest" and summary["meta"]["n_pairs"] == 12
    assert summary["meta"]["methods"] == ["identity"]
    assert summary["signal"]["stoi"] > 0.99


def test_feature_outputs_go_to_feature_probes(corpora, tmp_path, monkeypatch):
    """A manifest whose outputs are .npy feature vectors is handed to feature_probes.evaluate_features."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import anoncli.evaluation.feature_probes as feature_probes

    original, _, _ = corpora
    out = tmp_path / "features_out"
    (out / "manifest").mkdir(parents=True)
    rels = sorted(p.relative_to(original).as_posix() for p in original.rglob("*.wav"))
    for rel in rels:
        (out / rel).with_suffix(".npy").parent.mkdir(parents=True, exist_ok=True)
        np.save(out / Path(rel).with_suffix(".npy"), np.zeros(4, dtype=np.float32))
    table = pa.table(
        {
            "utt_id": [r[:-4] for r in rels],
            "source_path": rels,
            "output_path": [r[:-4] + ".npy" for r in rels],
            "status": ["ok"] * len(rels),
            "method": ["siamese"] * len(rels),
        }
    )
    pq.write_table(table, out / "manifest" / "part-00000-of-00001.parquet")
    seen = {}

    def fake_evaluate_features(original_corpus, anonymized_dir, manifest_table, probes=None, seed=0):
        seen["rows"] = manifest_table.num_rows
        return [
            {"utt_id": "x", "probe": "utility:gender", "label": "f", "predicted": "f", "correct": True, "score": 0.9}
        ], {"utility:gender": {"accuracy": 100.0, "chance": 50.0, "n": 1}}

    monkeypatch.setattr(feature_probes, "evaluate_features", fake_evaluate_features)
    result = run(original, out, "--out", tmp_path / "rep", "--quiet", "--gate", "features.utility:gender.accuracy>=90")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert seen["rows"] == len(rels)
    assert summary["features"]["utility:gender"]["accuracy"] == 100.0
    assert (tmp_path / "rep" / "feature_scores.parquet").is_file()


def test_parallel_extraction_gives_the_same_report(corpora):
    """--jobs 2 runs decoding and embeddings in worker processes; the figures must not change."""
    original, anonymized, root = corpora
    serial, parallel = root / "serial", root / "parallel"
    assert (
        run(original, anonymized, "--out", serial, "--probes", "asv,signal,gender", "--bootstrap", "0", "-q").exit_code
        == 0
    )
    result = run(
        original,
        anonymized,
        "--out",
        parallel,
        "--probes",
        "asv,signal,gender",
        "--bootstrap",
        "0",
        "-q",
        "--jobs",
        "2",
    )
    assert result.exit_code == 0, result.output
    a = pd.read_parquet(serial / "scores.parquet").sort_values("utt_id").reset_index(drop=True)
    b = pd.read_parquet(parallel / "scores.parquet").sort_values("utt_id").reset_index(drop=True)
    numeric = [c for c in a.columns if a[c].dtype.kind == "f"]
    assert numeric and list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a[numeric], b[numeric], rtol=1e-5, atol=1e-6)
    summary_a = json.loads((serial / "summary.json").read_text())
    summary_b = json.loads((parallel / "summary.json").read_text())
    assert summary_a["asv"]["OA"]["EER"] == pytest.approx(summary_b["asv"]["OA"]["EER"])


def test_bad_backend_is_a_usage_error(corpora):
    from anoncli.errors import AnoncliError

    original, anonymized, root = corpora
    result = run(original, anonymized, "--out", root / "nope", "--backend", "spark")
    assert isinstance(result.exception, AnoncliError) and result.exception.exit_code == EXIT_USAGE
    assert "--backend" in str(result.exception) and not (root / "nope").exists()


def test_attacker_data_adds_other_speakers_and_drops_the_evaluated_ones(corpora, tmp_path):
    original, anonymized, root = corpora
    other = tmp_path / "other"
    rows = ["file_name,speaker,gender,transcript,language"]
    voices = {
        "f3": ("female", 205, (820, 1550, 2850)),
        "m3": ("male", 118, (600, 1200, 2500)),
        "f1": ("female", 220, (850, 1600, 2900)),
    }  # f1 is also evaluated: left out of the attackers' data
    for index, (speaker, (gender, f0, formants)) in enumerate(voices.items()):
        (other / speaker).mkdir(parents=True)
        for i in range(2):
            rel = f"{speaker}/{speaker}_{i}.wav"
            sf.write(other / rel, voiced(0.8, 16000, f0 * (1 + 0.02 * i), formants, seed=70 + 10 * index + i), 16000)
            rows.append(f"{rel},{speaker},{gender},ein wort,de")
    (other / "metadata.csv").write_text("\n".join(rows) + "\n")
    other_anon = tmp_path / "other_anon"
    shutil.copytree(other, other_anon, ignore=shutil.ignore_patterns("metadata.csv"))
    out = tmp_path / "report"
    result = run(
        original,
        anonymized,
        "--out",
        out,
        "--probes",
        "gender",
        "--bootstrap",
        "0",
        "--attacker-data",
        other,
        other_anon,
        "--gate",
        "gender.gr>=0,gender.informed.acc<0",
    )
    assert result.exit_code == EXIT_GATE, result.output  # no accuracy reaches 101 %
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["attacker_data"]["n"] == 4 and summary["meta"]["attacker_data"]["speakers"] == 2
    assert summary["gender"]["extra_training"] == 4 and summary["gender"]["n"] == 12
    # the protocol: model family, the evaluated folds plus how much of which corpus, original or anonymized audio
    protocol = summary["meta"]["attackers"]["gender"]
    assert protocol["trained_on"]["extra"] == {
        "original": str(other.resolve()),
        "anonymized": str(other_anon.resolve()),
        "utterances": 4,
        "speakers": 2,
    }
    assert protocol["trained_on"]["evaluated"] == {
        "utterances": 12,
        "speakers": 4,
        "folds": 4,
        "split": "speaker-disjoint folds",
    }
    assert "logistic regression" in protocol["family"]
    assert protocol["attackers"]["ignorant"] == "trained on original audio, tested on anonymized audio"
    page = (out / "report.html").read_text()
    top = page.index("<h2>Attackers</h2>")
    assert top < page.index("<table>") and "plus 4 utterances of 2 other speakers of --attacker-data" in page[top:]
    # each gate condition names the protocol it was checked under
    gate = {c["condition"]: c for c in summary["meta"]["gate"]["conditions"]}
    assert gate["gender.gr>=0"]["passed"] and not gate["gender.informed.acc<0"]["passed"]
    assert gate["gender.gr>=0"]["protocol"].startswith("gender ignorant attacker: trained on original audio")
    assert "plus 4 utterances of 2 other speakers" in gate["gender.gr>=0"]["protocol"]
    assert "gender.informed.acc<0: measured" in result.stderr
    assert "[gender informed attacker: trained on anonymized audio, tested on anonymized audio;" in result.stderr
    assert any("2 of 6 pairs left out" in note for note in summary["notes"])
    only_evaluated = tmp_path / "only"
    (only_evaluated / "f1").mkdir(parents=True)
    shutil.copy(other / "f1" / "f1_0.wav", only_evaluated / "f1" / "f1_0.wav")
    (only_evaluated / "metadata.csv").write_text("file_name,speaker,gender\nf1/f1_0.wav,f1,female\n")
    refused = run(
        original,
        anonymized,
        "--out",
        tmp_path / "r2",
        "--probes",
        "gender",
        "--bootstrap",
        "0",
        "--attacker-data",
        only_evaluated,
        only_evaluated,
    )
    assert isinstance(refused.exception, InputError)  # main() turns it into one line and exit 2
    assert "no utterance of a speaker other than those evaluated" in str(refused.exception)


def test_gate_fails_when_the_anonymized_folder_lacks_originals(corpora, tmp_path):
    original, anonymized, root = corpora
    partial = tmp_path / "partial"
    shutil.copytree(anonymized, partial)
    (partial / "f1" / "f1_0.wav").unlink()  # an incomplete run: one file never written
    result = run(
        original,
        partial,
        "--out",
        tmp_path / "r",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--gate",
        "signal.stoi>=0.5",
    )
    assert result.exit_code == EXIT_GATE, result.output  # stoi is 1, but 1 of 12 files is not there
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["meta"]["unpaired_originals"] == 1
    listed = tmp_path / "list.txt"  # narrowed to the files the folder has: the gate judges those
    listed.write_text("\n".join(str(p) for p in sorted(original.rglob("*.wav")) if p.name != "f1_0.wav") + "\n")
    narrowed = run(
        original,
        partial,
        "--out",
        tmp_path / "r2",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--gate",
        "signal.stoi>=0.5",
        "--files-from",
        listed,
    )
    assert narrowed.exit_code == 0, narrowed.output


def test_a_probe_that_cannot_run_is_refused_with_the_reason(corpora, tmp_path):
    original, anonymized, root = corpora
    result = run(original, anonymized, "--out", tmp_path / "r", "--probes", "language", "--bootstrap", "0")
    assert isinstance(result.exception, InputError) or result.exit_code != 0
    message = str(result.exception)
    assert "--probes: language not available for these labels (language: not probed (one class))" in message
