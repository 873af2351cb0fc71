"""Exports of an anonymized output folder: Kaldi data dirs parsed back, audiofolders loaded back."""

from __future__ import annotations

import csv
import importlib.util
import inspect
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.json as pajson
import pytest
import soundfile as sf
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.corpus import open_corpus
from anoncli.errors import InputError
from anoncli.export import export_output, read_kaldi
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.testing.fake_corpora import FAKE_CORPORA, make_emodb, make_kaldi

GENDER_CODES = {"male": "m", "female": "f"}


def metadata_records(folder: Path) -> list[dict]:
    """The rows of an audiofolder export's metadata.jsonl, as written."""
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]


def anonymize(root: Path, out: Path) -> Path:
    run_anonymize(AnonymizeConfig(corpus=root, out=out, method="identity", progress=False))
    return out


@pytest.mark.parametrize("name", sorted(FAKE_CORPORA))
def test_detect_anonymize_export_round_trip(name, tmp_path):
    fake = FAKE_CORPORA[name](tmp_path / "in")
    corpus = open_corpus(fake.root)
    out = anonymize(fake.root, tmp_path / "out")

    kaldi = tmp_path / "kaldi"
    summary = export_output(out, "kaldi", kaldi)
    tables = read_kaldi(kaldi)
    assert summary.utterances == len(corpus) == len(tables["wav.scp"])
    by_speaker = {}
    for utt in corpus:
        speaker = utt.speaker or utt.utt_id.replace("/", "-")
        by_speaker.setdefault(speaker, []).append(utt)
    assert len(set(tables["utt2spk"].values())) == len(by_speaker)
    assert {s for s in by_speaker if corpus.utterances[0].speaker} <= set(tables["utt2spk"].values())
    for path in tables["wav.scp"].values():
        assert Path(path).is_absolute() and sf.info(path).frames == 800
    if all(u.labels.get("gender") for u in corpus):
        genders = {GENDER_CODES[u.labels["gender"]] for u in corpus}
        assert set(tables["spk2gender"].values()) == genders
    if all(u.labels.get("transcript") for u in corpus):
        assert sorted(tables["text"].values()) == sorted(u.labels["transcript"] for u in corpus)
    else:
        assert "text" not in tables

    folder = tmp_path / "audiofolder"
    export_output(out, "audiofolder", folder)
    records = metadata_records(folder)
    assert pajson.read_json(folder / "metadata.jsonl").num_rows == len(corpus)
    assert sorted(r["utt_id"] for r in records) == sorted(u.utt_id for u in corpus)
    for record in records:
        assert sf.info(str(folder / record["file_name"])).frames == 800
        utt = next(u for u in corpus if u.utt_id == record["utt_id"])
        for column, value in fake.expected[utt.utt_id].items():
            assert record[column] == (value or None), (utt.utt_id, column)
    if importlib.util.find_spec("datasets") is not None:  # optional: not a test dependency
        import datasets

        loaded = datasets.load_dataset("audiofolder", data_dir=str(folder), split="train")
        assert loaded.num_rows == len(corpus)


def test_pseudonymized_exports_hide_every_original_id(tmp_path):
    fake = make_emodb(tmp_path / "in")
    out = anonymize(fake.root, tmp_path / "out")
    mapping = tmp_path / "private" / "ids.csv"
    for fmt in ("kaldi", "audiofolder"):
        dest = tmp_path / f"export_{fmt}"
        summary = export_output(out, fmt, dest, pseudonymize=True, mapping=mapping, overwrite=True)
        assert summary.mapping == mapping.absolute()
        text = "\n".join(p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file() and p.suffix != ".wav")
        names = " ".join(str(p.relative_to(dest)) for p in dest.rglob("*"))
        for utt_id in fake.expected:
            assert utt_id not in text and utt_id not in names
        assert "03-" not in text and " 03\n" not in text
        assert not any(p.name.startswith("ids.csv") for p in dest.rglob("*"))
    with open(mapping, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["utt_id"] for r in rows} == set(fake.expected)
    assert {r["speaker"] for r in rows} == {"03", "08"}
    assert len({r["pseudo_speaker"] for r in rows}) == 2
    frame = pd.DataFrame(metadata_records(tmp_path / "export_audiofolder"))
    # Same key file, same pseudonyms in both exports; and labels survive.
    kaldi_speakers = set(read_kaldi(tmp_path / "export_kaldi")["utt2spk"].values())
    assert set(frame["speaker"]) == kaldi_speakers == {r["pseudo_speaker"] for r in rows}
    assert set(frame["emotion"]) == {"anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"}
    wav_scp = read_kaldi(tmp_path / "export_kaldi")["wav.scp"]
    assert all(
        Path(p).is_relative_to(tmp_path / "export_kaldi" / "wav") and Path(p).is_file() for p in wav_scp.values()
    )


def test_unsafe_requests_are_refused(tmp_path):
    fake = make_kaldi(tmp_path / "in")
    out = anonymize(fake.root, tmp_path / "out")
    dest = tmp_path / "dest"
    with pytest.raises(InputError, match="--mapping"):
        export_output(out, "kaldi", dest, pseudonymize=True)
    with pytest.raises(InputError, match="must not be written inside"):
        export_output(out, "kaldi", dest, pseudonymize=True, mapping=dest / "map.csv")
    with pytest.raises(InputError, match="outside the output folder"):
        export_output(out, "kaldi", out / "kaldi")
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        export_output(out, "kaldi", dest)
    assert (dest / "precious.txt").read_text() == "keep me"
    export_output(out, "kaldi", dest, overwrite=True)
    assert not (dest / "precious.txt").exists() and (dest / "wav.scp").is_file()
    assert not list(tmp_path.glob(".dest.anoncli-*"))


def test_only_ok_rows_are_exported(tmp_path):
    fake = make_emodb(tmp_path / "in")
    (fake.root / "wav" / "03a01Aa.wav").write_bytes(b"RIFF broken")
    out = anonymize(fake.root, tmp_path / "out")
    summary = export_output(out, "audiofolder", tmp_path / "af")
    assert summary.skipped == 1 and summary.utterances == 13
    assert "03a01Aa" not in (tmp_path / "af" / "metadata.jsonl").read_text()


def test_cli_export(tmp_path):
    fake = make_kaldi(tmp_path / "in")
    out = anonymize(fake.root, tmp_path / "out")
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(out), "--to", "kaldi", str(tmp_path / "k"), "--json"])
    assert result.exit_code == 0, result.output
    assert '"utterances": 3' in result.stdout
    assert read_kaldi(tmp_path / "k")["utt2spk"] == {"spk1-utt1": "spk1", "spk1-utt2": "spk1", "spk2-utt1": "spk2"}
    result = runner.invoke(
        app,
        [
            "export",
            str(out),
            "--to",
            "audiofolder",
            str(tmp_path / "a"),
            "--pseudonymize",
            "--mapping",
            str(tmp_path / "m.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.csv").is_file() and (tmp_path / "m.csv.key").is_file()


def test_kaldi_ids_that_would_collide_get_the_promised_hash(tmp_path):
    import numpy as np

    corpus = tmp_path / "in"
    (corpus / "d").mkdir(parents=True)
    tone = (0.3 * np.sin(np.arange(1600) * 0.2)).astype("float32")
    names = ["-rf.wav", "rf.wav", "d/x.wav", "d-x.wav", "a.wav"]
    for name in names:
        sf.write(corpus / name, tone, 16000, subtype="PCM_16")
    out = tmp_path / "out"
    run_anonymize(AnonymizeConfig(corpus=corpus, out=out, method="identity", progress=False, score=False))
    tables = read_kaldi(export_output(out, "kaldi", tmp_path / "k").dest)
    by_file = {Path(path).relative_to(out).as_posix(): utt for utt, path in tables["wav.scp"].items()}
    assert sorted(by_file) == sorted(names)
    assert len(set(by_file.values())) == len(names)
    assert by_file["rf.wav"] == "rf" and by_file["a.wav"] == "a"  # safe and unique: unchanged
    assert by_file["-rf.wav"] == "_rf"  # unlabelled: folders and `-` read `_`, so no leading `-`
    for name in ("d/x.wav", "d-x.wav"):
        assert re.fullmatch(r"d_x_[0-9a-f]{10}", by_file[name]), by_file
    again = read_kaldi(export_output(out, "kaldi", tmp_path / "k2").dest)
    assert again["wav.scp"].keys() == tables["wav.scp"].keys()  # the same ids on every export


def test_unlabelled_files_next_to_a_labelled_speaker_export_to_kaldi(tmp_path):
    import shutil

    corpus = tmp_path / "in"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "corpus", corpus)
    # Not in metadata.csv, so without a speaker; `Extra` and `_ngstr` sort before `awb_01`.
    for name in ("Extra.wav", "Ångström ñ.wav"):
        shutil.copy(corpus / "awb" / "awb_01.wav", corpus / "awb" / name)
    out = tmp_path / "out"
    run_anonymize(AnonymizeConfig(corpus=corpus, out=out, method="identity", progress=False, score=False))
    summary = export_output(out, "kaldi", tmp_path / "k")
    tables = read_kaldi(tmp_path / "k")  # checks both sort orders
    assert summary.utterances == 14 and summary.speakers == len(tables["spk2utt"]) == 5
    assert set(tables["spk2utt"]) >= {"awb", "rms", "slt", "awb_Extra"}
    assert tables["utt2spk"]["awb_Extra"] == "awb_Extra"
    assert all("-" not in spk for spk in tables["spk2utt"] if spk not in ("awb", "rms", "slt"))
    # The audiofolder export counts labelled speakers, and a missing label is null, as its help says.
    summary = export_output(out, "audiofolder", tmp_path / "af")
    extra = next(r for r in metadata_records(tmp_path / "af") if r["file_name"].endswith("Extra.wav"))
    assert summary.speakers == 3 and extra["speaker"] is None and extra["gender"] is None
    from anoncli.cli.export import export

    help_text = inspect.signature(export).parameters["to"].annotation.__metadata__[0].help
    assert "every label a string, null where missing" in help_text


def test_kaldi_speaker_order_clash_names_both_speakers(tmp_path):
    from anoncli.export.kaldi import write_kaldi
    from anoncli.export.source import ExportRow

    rows = [
        ExportRow(utt, spk, tmp_path / f"{i}.wav", f"{i}.wav", {})
        for i, (utt, spk) in enumerate([("a/x", "a"), ("b", "a-b")])
    ]
    with pytest.raises(InputError, match=r"speaker ids 'a' and 'a-b' .*'a-b-b'.*'a-x'"):
        write_kaldi(rows, tmp_path)
