"""Inputs of the kinds public bug reports against speech tools describe, each with its right outcome.

Every command runs the way a user runs it (`anoncli.cli.app.main`, in this
process) so that the exit code and the stderr line are the ones a shell sees.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_audio import voiced

from anoncli.audio import read_audio, resample
from anoncli.corpus import open_corpus
from anoncli.corpus.walk import is_audio_name
from anoncli.errors import AudioError, InputError
from anoncli.export import export_output, read_kaldi
from anoncli.manifest.reader import read_manifest
from anoncli.testing.fake_corpora import make_kaldi

RATE = 16000


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `anoncli ARGS` as a shell would (through main's error handling); (exit code, stdout, stderr)."""
    from anoncli.cli.app import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["anoncli", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    out, err = capsys.readouterr()
    return (0 if code is None else int(code)), out, err


def anonymize(monkeypatch, capsys, corpus: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return cli(monkeypatch, capsys, "anonymize", corpus, "--out", out, "--jobs", "1", "--no-progress", *extra)


def rows_by_source(out: Path) -> dict[str, dict]:
    return {row["source_path"]: row for row in read_manifest(out).to_pylist()}


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("anoncli: error:")]
    assert len(lines) == 1, err
    assert "internal error" not in lines[0], err
    return lines[0]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (links as their target text) -> a hash of its bytes and mode."""
    digest = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                digest[str(path)] = "link:" + os.readlink(path)
                continue
            data = path.read_bytes()
            digest[str(path)] = hashlib.sha256(data).hexdigest() + oct(path.stat().st_mode)
    return digest


# --- 1. every codec soundfile decodes ------------------------------------------------------------


def _codec_cases() -> list[tuple[str, str]]:
    cases = []
    for fmt in sorted(sf.available_formats()):
        if fmt == "RAW":  # headerless: no sample rate to read
            continue
        for subtype in sorted(sf.available_subtypes(fmt)):
            cases.append((fmt, subtype))
    return cases


@pytest.mark.parametrize("fmt, subtype", _codec_cases())
def test_every_codec_soundfile_decodes_is_decoded(tmp_path, fmt, subtype):
    path = tmp_path / f"x.{fmt.lower()}"
    noise = np.random.default_rng(0).standard_normal(16000) * 0.1
    try:
        sf.write(path, noise, 8000, subtype=subtype, format=fmt)
        expected, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception:
        pytest.skip(f"soundfile cannot write and read back {fmt}/{subtype} here")
    if expected.shape[0] == 0:
        pytest.skip(f"soundfile writes no frames for {fmt}/{subtype} here")
    audio = read_audio(path)
    assert audio.sample_rate == rate
    np.testing.assert_allclose(audio.samples, expected.mean(axis=1), atol=1e-6)


def test_gsm610_wav_is_anonymized(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "gsm.wav", np.random.default_rng(1).standard_normal(16000) * 0.1, 8000, subtype="GSM610")
    sf.write(corpus / "g721.wav", voiced(1.0, rate=8000), 8000, subtype="G721_32")
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out")
    assert code == 0, err
    rows = rows_by_source(tmp_path / "out")
    assert {k: r["status"] for k, r in rows.items()} == {"gsm.wav": "ok", "g721.wav": "ok"}
    info = sf.info(tmp_path / "out" / rows["gsm.wav"]["output_path"])
    assert info.samplerate == 8000 and abs(info.frames - 16000) <= 1


# --- 2. malformed label files ---------------------------------------------------------------------


def _labelled_corpus(root: Path) -> Path:
    (root / "clips").mkdir(parents=True)
    sf.write(root / "clips" / "a.wav", voiced(0.3), RATE, subtype="PCM_16")
    sf.write(root / "clips" / "b.wav", voiced(0.3, f0=200), RATE, subtype="PCM_16")
    return root


def test_semicolon_table_with_a_comma_in_the_transcript_is_read(tmp_path, monkeypatch, capsys):
    root = _labelled_corpus(tmp_path / "corpus")
    (root / "metadata.csv").write_text(
        "file_name;speaker;gender;transcript\nclips/a.wav;s1;F;hello, there\nclips/b.wav;s2;M;good; no\n".replace(
            "good; no", '"good; no"'
        )
    )
    corpus = open_corpus(root)
    labels = {u.rel_path: u.labels for u in corpus}
    assert labels["clips/a.wav"] == {"speaker": "s1", "gender": "female", "transcript": "hello, there"}
    assert labels["clips/b.wav"]["transcript"] == "good; no"
    code, _, err = anonymize(monkeypatch, capsys, root, tmp_path / "out")
    assert code == 0, err
    assert rows_by_source(tmp_path / "out")["clips/a.wav"]["transcript"] == "hello, there"


@pytest.mark.parametrize("sep, given", [("\t", "tab"), ("|", "|"), (";", ";"), (":", ":")])
def test_labels_sep_reads_any_separator(tmp_path, monkeypatch, capsys, sep, given):
    root = _labelled_corpus(tmp_path / "corpus")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"file_name{sep}speaker\nclips/a.wav{sep}s1\nclips/b.wav{sep}s2\n")
    code, _, err = anonymize(monkeypatch, capsys, root, tmp_path / "out", "--labels", labels, "--labels-sep", given)
    assert code == 0, err
    assert {k: r["speaker"] for k, r in rows_by_source(tmp_path / "out").items()} == {
        "clips/a.wav": "s1",
        "clips/b.wav": "s2",
    }
    assert cli(monkeypatch, capsys, "inspect", tmp_path / "out", "--check")[0] == 0  # reopens the corpus the same way


def test_utf16_table_with_tabs_as_spreadsheets_save_it_is_read(tmp_path):
    root = _labelled_corpus(tmp_path / "corpus")
    (root / "metadata.csv").write_bytes("file_name\tspeaker\r\nclips/a.wav\tJörg\r\n".encode("utf-16"))
    assert next(u for u in open_corpus(root) if u.rel_path == "clips/a.wav").labels == {"speaker": "Jörg"}


MALFORMED_LABELS = [
    # (file name, bytes, what the one-line error says)
    ("metadata.csv", b"file_name,speaker\nclips/a.wav,s1,extra\n", ["line 2", "3 fields", "header has 2"]),
    ("metadata.csv", b"file_name,speaker,gender\nclips/a.wav,s1\n", ["line 2", "2 fields", "header has 3"]),
    ("metadata.csv", b"file_name,speaker\nclips/a.wav,s1\nclips/a.wav,s2\n", ["line 3", "listed twice"]),
    ("metadata.csv", b"file_name,speaker\nclips/a.wav,s1\n./clips/a.wav,s2\n", ["line 3", "listed twice"]),
    ("metadata.csv", b"file_name,speaker,speaker\nclips/a.wav,s1,s2\n", ["line 1", "'speaker' appears twice"]),
    ("metadata.csv", b"file_name,speaker\nclips/a.wav,J\xf6rg\n", ["line 2", "not UTF-8", "0xf6"]),
    ("metadata.csv", b"file_name,speaker\nclips/a.wav,s1\x00\n", ["line 2", "NUL"]),
    ("metadata.csv", b"\xff\xfe" + "file_name\n".encode("utf-16-le") + b"\x00\xd8", ["UTF-16"]),
    ("metadata.csv", b"\xff\xfef\x00", ["file_name", "column"]),
    ("metadata.csv", b"name,speaker\nclips/a.wav,s1\n", ["file_name", "column"]),
    ("metadata.csv", b"", ["empty"]),
    ("metadata.csv", b'file_name,speaker\n"clips/a.wav,s1\n', ["line 2"]),
    ("metadata.csv", b"file_name,speaker\n/etc/passwd,s1\n", ["line 2", "outside the corpus"]),
    ("metadata.csv", b"file_name,speaker\n../../x.wav,s1\n", ["line 2", "outside the corpus"]),
    ("metadata.csv", b"file_name,speaker\nclips/gone.wav,s1\n", ["line 2", "names a file", "gone.wav"]),
    ("metadata.csv", b"file_name,speaker\n,s1\n", ["line 2", "empty file_name"]),
    (
        "metadata.jsonl",
        b'{"file_name": "clips/a.wav", "speaker": "s1", "speaker": "s2"}\n',
        ["line 1", "'speaker' appears twice"],
    ),
    ("metadata.jsonl", b'{"file_name": "clips/a.wav"}\n[1, 2]\n', ["line 2", "not a JSON object"]),
    ("metadata.jsonl", b'{"file_name": "clips/a.wav"\n', ["line 1", "not a JSON object"]),
    ("metadata.jsonl", b'{"file_name": "clips/a.wav"}\n{"file_name": "clips/a.wav"}\n', ["line 2", "listed twice"]),
    ("metadata.jsonl", b'{"file_name": "clips/a\\u0000.wav"}\n', ["line 1"]),
    ("metadata.parquet", b"PAR1 not really parquet", ["Parquet"]),
]


@pytest.mark.parametrize("name, data, words", MALFORMED_LABELS)
def test_malformed_label_files_are_one_line_input_errors(tmp_path, monkeypatch, capsys, name, data, words):
    root = _labelled_corpus(tmp_path / "corpus")
    (root / name).write_bytes(data)
    before = tree_digest(root)
    for command in (["anonymize", root, "--out", tmp_path / "out", "--jobs", "1", "--no-progress"], ["inspect", root]):
        code, _, err = cli(monkeypatch, capsys, *command)
        assert code == 2, err
        line = one_error_line(err)
        assert name in line, line
        for word in words:
            assert word in line, line
    assert tree_digest(root) == before


def test_every_manifest_column_is_reserved_from_labels():
    from anoncli.corpus import RESERVED
    from anoncli.manifest.schema import manifest_schema

    # `speaker` is the one label the manifest carries in a column of its own.
    assert set(manifest_schema([]).names) - {"speaker"} <= RESERVED


def test_absolute_paths_inside_the_corpus_are_accepted(tmp_path):
    root = _labelled_corpus(tmp_path / "corpus")
    (root / "metadata.csv").write_text(f"file_name,speaker\n{root.absolute() / 'clips' / 'a.wav'},s1\n")
    assert next(u for u in open_corpus(root) if u.rel_path == "clips/a.wav").labels == {"speaker": "s1"}


def test_a_name_the_output_file_system_refuses_fails_that_file_only(tmp_path, monkeypatch, capsys):
    root = _plain_corpus(tmp_path / "corpus", 3)
    real = Path.write_bytes

    def write_bytes(self, data):
        if "u1.wav" in self.name:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    code, _, err = anonymize(monkeypatch, capsys, root, tmp_path / "out")
    assert code == 3, err
    rows = rows_by_source(tmp_path / "out")
    assert rows["u1.wav"]["status"] == "failed" and "File name too long" in rows["u1.wav"]["error"]
    assert rows["u0.wav"]["status"] == rows["u2.wav"]["status"] == "ok"


def test_manifest_column_names_in_a_labels_table_are_kept_apart(tmp_path, monkeypatch, capsys):
    root = _labelled_corpus(tmp_path / "corpus")
    (root / "metadata.csv").write_text(
        "file_name,speaker,stoi,output_sample_rate,method,duration_s,note\n"
        "clips/a.wav,s1,high,x,lab,long,n1\nclips/b.wav,s2,low,y,lab,short,n2\n"
    )
    code, _, err = anonymize(monkeypatch, capsys, root, tmp_path / "out")
    assert code == 0, err
    row = rows_by_source(tmp_path / "out")["clips/a.wav"]
    assert row["method"] == "mcadams" and row["label_method"] == "lab" and row["label_stoi"] == "high"
    assert isinstance(row["duration_s"], float) and row["label_duration_s"] == "long"


# --- 3. environment errors on output --------------------------------------------------------------


def _plain_corpus(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        sf.write(root / f"u{i}.wav", voiced(0.3, f0=100 + 10 * i, seed=i), RATE, subtype="PCM_16")
    return root


def _failing_writes(monkeypatch, error: int, after: int = 0):
    """Every audio write after the first `after` ones fails as the OS would fail it."""
    calls = {"n": 0}
    real = Path.write_bytes

    def write_bytes(self, data):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(error, os.strerror(error), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return calls


@pytest.mark.parametrize(
    "error, cause",
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EACCES, "Permission denied"),
        (errno.EROFS, "Read-only file system"),
        (getattr(errno, "EDQUOT", errno.ENOSPC), os.strerror(getattr(errno, "EDQUOT", errno.ENOSPC))),
    ],
)
def test_os_errors_on_output_exit_2_naming_the_path_and_cause(tmp_path, monkeypatch, capsys, error, cause):
    root = _plain_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    before = tree_digest(root)
    _failing_writes(monkeypatch, error, after=2)
    code, _, err = anonymize(monkeypatch, capsys, root, out, "--batch-size", "2")
    assert code == 2, err
    line = one_error_line(err)
    assert cause in line and str(out) in line and ".wav" in line and ".anoncli-tmp" not in line, line
    assert tree_digest(root) == before


def test_missing_parent_and_a_file_in_the_way_exit_2(tmp_path, monkeypatch, capsys):
    root = _plain_corpus(tmp_path / "corpus", 2)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    code, _, err = anonymize(monkeypatch, capsys, root, blocker / "out")
    assert code == 2, err
    assert str(blocker) in one_error_line(err)
    code, _, err = anonymize(
        monkeypatch, capsys, root, tmp_path / "out2", "--pseudonymize", "--mapping", blocker / "map.csv"
    )
    assert code == 2, err
    assert str(blocker) in one_error_line(err)


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a small tmpfs needs root on Linux")
def test_a_really_full_disk_stops_and_a_rerun_finishes(tmp_path, monkeypatch, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        root = _plain_corpus(tmp_path / "corpus", 12)
        out = mount / "out"
        code, _, err = anonymize(monkeypatch, capsys, root, out, "--batch-size", "2")
        assert code == 2, err
        line = one_error_line(err)
        assert "No space left on device" in line and str(out) in line, line
        moved = tmp_path / "bigger" / "out"
        shutil.copytree(out, moved)  # the user frees space (here: moves the folder to a bigger disk)
        code, _, err = anonymize(monkeypatch, capsys, root, moved, "--batch-size", "2")
        assert code == 0, err
        assert {r["status"] for r in read_manifest(moved).to_pylist()} == {"ok"} and len(read_manifest(moved)) == 12
    finally:
        import gc

        gc.collect()  # a writer that failed mid-write may keep its file open until collected
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_other_commands_report_os_errors_in_one_line(tmp_path, monkeypatch, capsys):
    fake = make_kaldi(tmp_path / "in")
    out = tmp_path / "out"
    assert anonymize(monkeypatch, capsys, fake.root, out, "--method", "identity")[0] == 0
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.is_relative_to(readonly):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, _, err = cli(monkeypatch, capsys, "export", out, "--to", "kaldi", readonly / "k", "--json")
    assert code == 2, err
    assert "Read-only file system" in one_error_line(err)


def test_a_damaged_or_foreign_manifest_file_is_named_not_a_crash(tmp_path, monkeypatch, capsys):
    root = _plain_corpus(tmp_path / "corpus", 2)
    out = tmp_path / "out"
    assert anonymize(monkeypatch, capsys, root, out)[0] == 0
    part = next((out / "manifest").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:40])  # cut short, as a crashed file system might leave it
    for command in (
        ["anonymize", root, "--out", out, "--jobs", "1", "--no-progress"],
        ["inspect", out, "--check"],
        ["inspect", part],
    ):
        code, _, err = cli(monkeypatch, capsys, *command)
        assert code == 2, err
        assert str(part) in one_error_line(err)
    part.unlink()  # what the message says to do
    code, _, err = anonymize(monkeypatch, capsys, root, out)
    assert code == 0 and "2 ok" in err, err


# --- 4. the summary and exit code describe the output folder ------------------------------------


def test_a_rerun_reports_failures_left_in_the_folder(tmp_path, monkeypatch, capsys):
    root = _plain_corpus(tmp_path / "corpus", 4)
    (root / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    out = tmp_path / "out"
    code, _, err = anonymize(monkeypatch, capsys, root, out)
    assert code == 3, err
    assert "4 ok, 1 failed, 0 already done" in err and "--retry-failed" in err

    code, _, err = anonymize(monkeypatch, capsys, root, out)
    assert code == 3, err
    assert "0 ok, 0 failed, 5 already done (1 of them failed before)" in err
    assert f"{out} holds 1 failed file(s) (1 from earlier runs)" in err and "--retry-failed" in err

    sf.write(root / "broken.wav", voiced(0.3), RATE, subtype="PCM_16")  # the user repairs the file
    code, _, err = anonymize(monkeypatch, capsys, root, out, "--retry-failed")
    assert code == 0, err
    assert "1 ok, 0 failed, 4 already done" in err and "holds" not in err
    code, _, _ = cli(monkeypatch, capsys, "inspect", out, "--check")
    assert code == 0


def test_files_stopped_by_a_full_disk_are_redone_on_resume(tmp_path, monkeypatch, capsys):
    root = _plain_corpus(tmp_path / "corpus", 6)
    out = tmp_path / "out"
    _failing_writes(monkeypatch, errno.ENOSPC, after=3)
    code, _, err = anonymize(monkeypatch, capsys, root, out, "--batch-size", "2")
    assert code == 2, err
    monkeypatch.undo()  # space freed
    code, _, err = anonymize(monkeypatch, capsys, root, out, "--batch-size", "2")
    assert code == 0, err
    rows = read_manifest(out).to_pylist()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert cli(monkeypatch, capsys, "inspect", out, "--check")[0] == 0


# --- 5. no added artefacts: DC offset and rumble ------------------------------------------------


def _speech_with_pauses(f0: float = 150.0) -> np.ndarray:
    parts = []
    for i in range(6):
        parts += [voiced(0.3, f0=f0, seed=i), np.zeros(int(0.2 * RATE), np.float32)]
    return np.concatenate(parts)


def _peak_db(samples: np.ndarray, freq: float) -> float:
    """Power at `freq` (±1.5 Hz) over the median power of its neighbourhood (8-40 Hz away), in dB."""
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    f = np.fft.rfftfreq(len(samples), 1 / RATE)
    at = power[(f >= freq - 1.5) & (f <= freq + 1.5)].max()
    near = (np.abs(f - freq) >= 8) & (np.abs(f - freq) <= 40)
    return float(10 * np.log10(at / max(np.median(power[near]), 1e-300)))


def test_dc_offset_adds_no_buzz_at_the_frame_rate(tmp_path, monkeypatch, capsys):
    speech = _speech_with_pauses()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "clean.wav", speech, RATE, subtype="FLOAT")
    sf.write(corpus / "offset.wav", speech + 0.15, RATE, subtype="FLOAT")
    t = np.arange(len(speech)) / RATE
    sf.write(corpus / "rumble.wav", speech + 0.1 * np.sin(2 * np.pi * 4 * t), RATE, subtype="FLOAT")
    sf.write(corpus / "dc_only.wav", np.full(RATE, 0.15, np.float32), RATE, subtype="FLOAT")
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out", "--alpha", "0.8")
    assert code == 0, err
    rows = rows_by_source(tmp_path / "out")
    outputs = {
        name: sf.read(tmp_path / "out" / rows[f"{name}.wav"]["output_path"])[0]
        for name in ("clean", "offset", "rumble", "dc_only")
    }
    for frame_harmonic in (100.0, 200.0):  # 10 ms frames; the input (F0 138-162 Hz) has no peak there
        assert _peak_db(speech, frame_harmonic) < 6
        for name in ("clean", "offset", "rumble"):
            assert _peak_db(outputs[name], frame_harmonic) < 6, (name, frame_harmonic)
    # The output level is the speech's, not the one an offset inflates.
    level = {name: float(np.sqrt(np.mean(outputs[name] ** 2))) for name in ("clean", "offset", "rumble")}
    assert level["offset"] == pytest.approx(level["clean"], rel=0.02)
    assert level["rumble"] == pytest.approx(level["clean"], rel=0.05)
    assert np.max(np.abs(outputs["dc_only"])) < 1e-3  # nothing there: nothing comes out


# --- 6. a mixdown that cancels the channels -----------------------------------------------------


def test_phase_inverted_stereo_is_flagged_and_channel_picks_one(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    left = voiced(0.5)
    sf.write(corpus / "inverted.wav", np.stack([left, -left], axis=1), RATE, subtype="PCM_16")
    sf.write(corpus / "normal.wav", np.stack([left, voiced(0.5, f0=200)], axis=1), RATE, subtype="PCM_16")
    sf.write(corpus / "mono.wav", left, RATE, subtype="PCM_16")
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out")
    assert code == 0, err
    assert "inverted.wav" in err and "warning" in err and "--channel" in err
    rows = rows_by_source(tmp_path / "out")
    assert rows["inverted.wav"]["status"] == "ok" and "cancel" in rows["inverted.wav"]["note"]
    assert rows["normal.wav"]["note"] is None and rows["mono.wav"]["note"] is None

    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out_left", "--channel", "1")
    assert code == 0, err
    rows = rows_by_source(tmp_path / "out_left")
    assert all(r["status"] == "ok" and r["note"] is None for r in rows.values())
    kept = sf.read(tmp_path / "out_left" / rows["inverted.wav"]["output_path"])[0]
    assert np.sqrt(np.mean(kept**2)) == pytest.approx(np.sqrt(np.mean(left.astype(np.float64) ** 2)), rel=0.1)

    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out_third", "--channel", "3")
    assert code == 3, err
    rows = rows_by_source(tmp_path / "out_third")
    assert "--channel 3" in rows["inverted.wav"]["error"] and rows["mono.wav"]["status"] == "ok"


# --- 7. a folder named partly like a known corpus ------------------------------------------------


def test_partly_emodb_named_folder_falls_back_to_plain_with_a_warning(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, name in enumerate(["03a01Fa", "03a02Wb", "08b01Nc", "10a04Ta", "interview_01", "interview_02"]):
        sf.write(corpus / f"{name}.wav", voiced(0.3, seed=i), RATE, subtype="PCM_16")
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out")
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "warning" in line)
    assert "EmoDB" in warning and "67%" in warning and "--layout emodb" in warning and "plain" in warning
    assert len(read_manifest(tmp_path / "out")) == 6
    forced = open_corpus(corpus, layout="emodb")
    assert forced.layout == "emodb"
    assert next(u for u in forced if u.utt_id == "03a01Fa").labels["emotion"] == "happiness"


def test_a_file_name_that_is_not_utf8_is_recorded_with_escapes_and_reruns_work(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.wav")  # `cp a.wav "c/$(printf 'caf\xe9.wav')"`
    for i, name in enumerate(["a.wav", latin1, "b.wav"]):
        sf.write(os.fsencode(corpus / name), voiced(0.3, seed=i), RATE, subtype="PCM_16")  # the bytes as named
    out = tmp_path / "out"
    code, _, err = anonymize(monkeypatch, capsys, corpus, out, "--no-score")
    assert code == 0, err
    assert "1 file name(s) are not UTF-8" in err and "caf\\xe9.wav" in err
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    assert {u: (r["status"], r["source_path"], r["output_path"]) for u, r in rows.items()} == {
        "a": ("ok", "a.wav", "a.wav"),
        "b": ("ok", "b.wav", "b.wav"),
        "caf\\xe9": ("ok", "caf\\xe9.wav", "caf\\xe9.wav"),
    }
    assert sf.info(out / "caf\\xe9.wav").frames == sf.info(os.fsencode(corpus / latin1)).frames
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    code, _, err = anonymize(monkeypatch, capsys, corpus, out, "--no-score")  # a rerun finds it done
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")} == stamp and len(read_manifest(out)) == 3
    code, _, err = cli(monkeypatch, capsys, "inspect", out, "--check", "--format", "json")
    assert code == 0, err
    code, _, err = cli(monkeypatch, capsys, "export", out, "--to", "audiofolder", tmp_path / "af")
    assert code == 0, err
    assert '"utt_id": "caf\\\\xe9"' in (tmp_path / "af" / "metadata.jsonl").read_text(encoding="utf-8")


def test_non_ascii_names_under_the_c_locale(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = ["café", "日本"]
    for i, name in enumerate(names):
        sf.write(corpus / f"{name}.wav", voiced(0.3, seed=i), RATE, subtype="PCM_16")
    (corpus / "metadata.csv").write_text(
        "file_name,speaker\n" + "".join(f"{n}.wav,s{i}\n" for i, n in enumerate(names)), encoding="utf-8"
    )
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "anoncli",
        "anonymize",
        str(corpus),
        "--out",
        str(out),
        "--method",
        "identity",
        "--no-score",
        "--no-progress",
        "--jobs",
        "1",
    ]
    # PYTHONUTF8=0 as well: an ASCII file system encoding, where these names reach Python as surrogate escapes.
    for extra in ({}, {"PYTHONUTF8": "0"}):
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", **extra}
        env.pop("PYTHONIOENCODING", None)
        done = subprocess.run(command, env=env, capture_output=True, text=True, errors="replace")
        assert done.returncode == 0, done.stderr
        rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
        assert {u: (r["status"], r["source_path"], r["output_path"], r["speaker"]) for u, r in rows.items()} == {
            n: ("ok", f"{n}.wav", f"{n}.wav", f"s{i}") for i, n in enumerate(names)
        }
        assert sorted(os.listdir(out)) == sorted(["manifest", "run.json", *(f"{n}.wav" for n in names)])
        # inspect --check reads the outputs back and prints their names on an ASCII terminal without a crash
        check = subprocess.run(
            [sys.executable, "-m", "anoncli", "inspect", str(out), "--check"],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
        )
        assert check.returncode == 0, check.stderr


# --- 8. Kaldi round trips -----------------------------------------------------------------------


def test_kaldi_manifest_records_real_source_paths(tmp_path, monkeypatch, capsys):
    fake = make_kaldi(tmp_path / "in")
    out = tmp_path / "out"
    code, _, err = anonymize(monkeypatch, capsys, fake.root, out, "--method", "identity")
    assert code == 0, err
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    assert rows["spk1-utt1"]["source_path"] == "local_wav/spk1-utt1.wav"
    absolute = str((tmp_path / "in" / "kaldi_audio" / "spk1-utt2.wav").resolve())
    assert rows["spk1-utt2"]["source_path"] == absolute
    for row in rows.values():
        assert (fake.root / row["source_path"]).is_file()
        assert row["output_path"].startswith(("spk1/", "spk2/"))


def test_kaldi_export_gives_unique_stable_ids_to_unicode_names(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = ["日本", "中国", "한국", "Ελλάδα", "a b", "a_b", "a:b", "x..y", "-x"]
    for i, name in enumerate(names):
        sf.write(corpus / f"{name}.wav", voiced(0.2, seed=i), RATE, subtype="PCM_16")
    out = tmp_path / "out"
    assert anonymize(monkeypatch, capsys, corpus, out, "--method", "identity")[0] == 0
    first = read_kaldi(export_output(out, "kaldi", tmp_path / "k1").dest)
    second = read_kaldi(export_output(out, "kaldi", tmp_path / "k2").dest)
    assert first == {
        k: {u: v.replace(str(tmp_path / "k2"), str(tmp_path / "k1")) for u, v in t.items()} for k, t in second.items()
    }
    ids = list(first["utt2spk"])
    assert len(set(ids)) == len(names) == len(ids)
    assert all(id_ and id_.isascii() and not id_.startswith(("-", ".")) and " " not in id_ for id_ in ids)
    assert "u_e83335cfe1" in ids and "u_a397a42c3b" in ids  # 日本, 中国: the same ids on every machine
    # A Kaldi data folder with Unicode ids anonymizes and exports too.
    kaldi = tmp_path / "kdata"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text("".join(f"{n} {corpus / (n + '.wav')}\n" for n in names[:4]))
    (kaldi / "utt2spk").write_text("".join(f"{n} {n}\n" for n in names[:4]))
    out2 = tmp_path / "out2"
    code, _, err = anonymize(monkeypatch, capsys, kaldi, out2, "--method", "identity")
    assert code == 0, err
    assert {r["output_path"] for r in read_manifest(out2).to_pylist()} == {f"{n}/{n}.wav" for n in names[:4]}
    assert len(read_kaldi(export_output(out2, "kaldi", tmp_path / "k3").dest)["wav.scp"]) == 4


# --- 9. links -----------------------------------------------------------------------------------


def test_dangling_symlink_and_link_loop_are_named(tmp_path, monkeypatch, capsys):
    corpus = _plain_corpus(tmp_path / "corpus", 2)
    os.symlink(tmp_path / "gone.wav", corpus / "dangling.wav")
    os.symlink(corpus / "loop.wav", corpus / "loop.wav")
    with pytest.raises(AudioError, match="broken symbolic link"):
        read_audio(corpus / "dangling.wav")
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out")
    assert code == 3, err
    rows = rows_by_source(tmp_path / "out")
    assert "broken symbolic link" in rows["dangling.wav"]["error"] and "gone.wav" in rows["dangling.wav"]["error"]
    assert "symbolic link loop" in rows["loop.wav"]["error"]
    (corpus / "metadata.csv").write_text("file_name,speaker\ndangling.wav,s1\n")
    with pytest.raises(InputError, match="line 2: 'dangling.wav' is a broken symbolic link"):
        open_corpus(corpus)


def test_an_unreadable_folder_is_named_not_silently_skipped(tmp_path, monkeypatch, capsys):
    corpus = _plain_corpus(tmp_path / "corpus", 2)
    (corpus / "locked").mkdir()
    sf.write(corpus / "locked" / "x.wav", voiced(0.3), RATE, subtype="PCM_16")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out")
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "warning" in line)
    assert "1 folder(s) cannot be read" in warning and "locked" in warning and "Permission denied" in warning


# --- 10. Hugging Face datasets round trip ---------------------------------------------------------


def offline_datasets(monkeypatch):
    """The `datasets` module, told to stay offline (no Hub look-ups); skips the test when it is not installed."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    return datasets


@pytest.mark.parametrize("tree", ["plain", "split-named folders"])
def test_audiofolder_export_loads_in_datasets_offline(tmp_path, monkeypatch, capsys, tree):
    datasets = offline_datasets(monkeypatch)
    corpus = tmp_path / "corpus"
    folders = {"plain": ["spk_a", "spk_b"], "split-named folders": ["dev-clean", "test_set"]}[tree]
    rows = []
    for i, folder in enumerate(folders * 2):
        rel = f"{folder}/u{i}.wav"
        (corpus / folder).mkdir(parents=True, exist_ok=True)
        sf.write(corpus / rel, voiced(0.3, seed=i), RATE, subtype="PCM_16")
        rows.append(f"{rel},spk{i % 2},{'F' if i % 2 else 'M'},word {i}")
    (corpus / "metadata.csv").write_text("file_name,speaker,gender,transcript\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert anonymize(monkeypatch, capsys, corpus, out)[0] == 0
    code, _, err = cli(monkeypatch, capsys, "export", out, "--to", "audiofolder", tmp_path / "hf", "--json")
    assert code == 0, err
    loaded = datasets.load_dataset("audiofolder", data_dir=str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"]
    table = loaded["train"]
    assert table.num_rows == 4
    by_id = {r["utt_id"]: r for r in table}
    assert {u: (r["speaker"], r["gender"], r["transcript"]) for u, r in by_id.items()} == {
        f"{folder}/u{i}": (f"spk{i % 2}", "female" if i % 2 else "male", f"word {i}")
        for i, folder in enumerate(folders * 2)
    }
    sample = by_id[f"{folders[0]}/u0"]["audio"]
    assert sample["sampling_rate"] == RATE and len(sample["array"]) == int(0.3 * RATE)


def test_audiofolder_labels_and_lengths_survive_datasets_load_dataset(tmp_path, monkeypatch, capsys):
    datasets = offline_datasets(monkeypatch)
    corpus = tmp_path / "in"
    corpus.mkdir()
    labels = [  # speaker, zip, transcript, gender, age: strings that a typed reader turns into numbers or None
        ("01", "02134", "NA", "female", "007"),
        ("0001", "00501", "None", "male", "1.50"),
        ("01", "10001", "true", "", "1e3"),
        ("0001", "02134", "null and void", "male", "-0"),
    ]
    lengths = [1601, 2400, 1999, 3203]
    lines = ["file_name,speaker,zip,transcript,gender,age"]
    for i, ((speaker, zipcode, transcript, gender, age), n) in enumerate(zip(labels, lengths)):
        sf.write(
            corpus / f"u{i}.wav",
            (0.2 * np.sin(np.arange(n) * 0.05 * (i + 1))).astype("float32"),
            16000,
            subtype="PCM_16",
        )
        lines.append(f'u{i}.wav,{speaker},{zipcode},"{transcript}",{gender},{age}')
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert anonymize(monkeypatch, capsys, corpus, out, "--no-score")[0] == 0
    export_output(out, "audiofolder", tmp_path / "hf")
    loaded = datasets.load_dataset(
        "audiofolder", data_dir=str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"), split="train"
    )
    by_id = {row["utt_id"]: row for row in loaded}
    assert sorted(by_id) == [f"u{i}" for i in range(len(labels))]
    for i, ((speaker, zipcode, transcript, gender, age), n) in enumerate(zip(labels, lengths)):
        row = by_id[f"u{i}"]
        assert (row["speaker"], row["zip"], row["transcript"], row["gender"], row["age"]) == (
            speaker,
            zipcode,
            transcript,
            gender or None,
            age,
        )
        assert len(row["audio"]["array"]) == n and row["audio"]["sampling_rate"] == 16000


# --- levels of outputs scaled to fit 16 bits ------------------------------------------------------


def test_evaluate_measures_the_level_change_of_the_files_not_the_manifest(tmp_path, monkeypatch, capsys):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from anoncli.manifest.layout import part_files

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    loud = voiced(1.0, seed=1) * 8.0  # a float input far above full scale: the output is scaled down to fit
    sf.write(corpus / "loud.wav", loud, RATE, subtype="FLOAT")
    sf.write(corpus / "plain.wav", voiced(1.0, seed=2), RATE, subtype="PCM_16")
    out = tmp_path / "out"
    assert anonymize(monkeypatch, capsys, corpus, out, "--method", "identity")[0] == 0
    written = sf.read(out / "loud.wav")[0]
    truth = 20 * np.log10(np.sqrt(np.mean(written**2)) / np.sqrt(np.mean(loud.astype(np.float64) ** 2)))
    assert truth < -10
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    assert abs(rows["loud"]["level_change_db"] - truth) < 0.1  # the manifest measures the file as written
    (part,) = part_files(out)  # a manifest of an older run, which said 0 dB
    table = pq.read_table(part)
    column = table.schema.get_field_index("level_change_db")
    pq.write_table(table.set_column(column, "level_change_db", pc.multiply(table.column(column), 0.0)), part)
    code, _, err = cli(
        monkeypatch, capsys, "evaluate", corpus, out, "--out", tmp_path / "report", "--probes", "signal", "--no-cache"
    )
    assert code == 0, err
    scores = {r["utt_id"]: r for r in pq.read_table(tmp_path / "report" / "scores.parquet").to_pylist()}
    assert abs(scores["loud"]["signal.level_change_db"] - truth) < 0.1
    assert abs(scores["plain"]["signal.level_change_db"]) < 0.1


# --- a FLAC written to a pipe ---------------------------------------------------------------------


def _piped_flac(path: Path, wave: np.ndarray, rate: int) -> None:
    """A FLAC as an encoder writing to a pipe leaves it: STREAMINFO total_samples 0 and no MD5 (it cannot seek back)."""
    sf.write(path, wave, rate, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, at byte 8
    fields = int.from_bytes(data[18:26], "big")  # rate (20 bits), channels (3), bits (5), total_samples (36)
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    data[26:42] = bytes(16)
    path.write_bytes(bytes(data))


def test_a_flac_written_to_a_pipe_is_decoded_and_measured(tmp_path, monkeypatch, capsys):
    from anoncli.jobs.batching import header_duration

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    waves = [voiced(0.7, seed=i) for i in range(3)]
    for i, wave in enumerate(waves):
        _piped_flac(corpus / f"p{i}.flac", wave, RATE)
    assert sf.info(corpus / "p0.flac").frames > 10**15  # what libsndfile makes of the missing length
    expected = sf.read(io.BytesIO(_flac_bytes(waves[0])), dtype="float32")[0]
    assert np.array_equal(read_audio(corpus / "p0.flac").samples, expected)
    code, out, err = cli(monkeypatch, capsys, "inspect", corpus, "--format", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["unreadable_headers"] == 0 and summary["sample_rates"] == {str(RATE): 3}
    assert summary["hours"] == round(3 * 0.7 / 3600, 4)  # not 160 billion
    assert header_duration(open_corpus(corpus).utterances[0]) == 0.0  # unknown: no huge batch weight
    code, _, err = anonymize(monkeypatch, capsys, corpus, tmp_path / "out", "--no-score", "--method", "mcadams")
    assert code == 0, err
    for i, wave in enumerate(waves):
        assert sf.info(tmp_path / "out" / f"p{i}.wav").frames == len(wave)


def _flac_bytes(wave: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


# --- resampling at odd rates ----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [44101, 22254, 4000, 192000])
@pytest.mark.parametrize("to", [16000, 44100])
def test_odd_rates_resample_to_the_right_length_and_keep_the_frequency(rate, to):
    import torch

    seconds, freq = 1.0, 1000.0
    t = np.arange(int(seconds * rate)) / rate
    sine = np.sin(2 * np.pi * freq * t).astype(np.float32)
    out = resample(sine, rate, to)
    assert out.dtype == np.float32 and len(out) == round(len(sine) * to / rate)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak = np.fft.rfftfreq(len(out), 1 / to)[np.argmax(spectrum)]
    assert abs(peak - freq) <= 1.5
    again = resample(torch.from_numpy(sine), rate, to)
    assert isinstance(again, torch.Tensor) and np.array_equal(again.numpy(), out)  # same bits, same path
    batch = resample(torch.from_numpy(np.stack([sine, sine])), rate, to)
    assert batch.shape == (2, len(out))


def test_resampling_is_bitwise_reproducible_across_processes():
    code = (
        "import numpy as np, hashlib; from anoncli.audio import resample; "
        "x = np.random.default_rng(5).standard_normal(44101).astype(np.float32); "
        "print(hashlib.sha256(resample(x, 44101, 16000).tobytes()).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    x = np.random.default_rng(5).standard_normal(44101).astype(np.float32)
    assert digests == {hashlib.sha256(resample(x, 44101, 16000).tobytes()).hexdigest() + "\n"}


def test_sample_rates_outside_speech_are_refused(tmp_path):
    sf.write(tmp_path / "slow.wav", np.zeros(2000, np.float32), 100, subtype="PCM_16")
    with pytest.raises(AudioError, match="unsupported sample rate 100 Hz"):
        read_audio(tmp_path / "slow.wav")


# --- property: random bytes, headers and label files never end in an internal error ---------------


def _random_wav_header(rng: random.Random) -> bytes:
    channels = rng.choice([0, 1, 2, 3, 8, 255, 65535])
    rate = rng.choice([0, 1, 100, 4000, 8000, 16000, 44101, 192000, 10**6, 2**31 - 1, 2**32 - 1])
    bits = rng.choice([0, 1, 8, 12, 16, 24, 32, 64, 65535])
    fmt_tag = rng.choice([1, 3, 6, 7, 0x11, 0x31, 0xFFFE, 0, 0x1234])
    payload = rng.randbytes(rng.choice([0, 1, 7, 64, 3000, 40000]))
    declared = rng.choice([len(payload), 0, 0xFFFFFFFF, len(payload) * 3, rng.getrandbits(32)])
    fmt_chunk = struct.pack(
        "<HHIIHH",
        fmt_tag,
        channels,
        rate,
        (rate * channels * bits // 8) & 0xFFFFFFFF,
        (channels * bits // 8) & 0xFFFF,
        bits,
    )
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt_chunk))
        + fmt_chunk
        + b"data"
        + struct.pack("<I", declared)
        + payload
    )
    return b"RIFF" + struct.pack("<I", rng.choice([len(body), 0, 0xFFFFFFFF])) + body


def _random_audio_file(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["bytes", "wav", "wav", "magic", "valid"])
    if kind == "bytes":
        return rng.choice([".wav", ".flac", ".mp3", ".ogg", ".sph", ".aiff"]), rng.randbytes(
            rng.choice([0, 1, 44, 5000])
        )
    if kind == "wav":
        return ".wav", _random_wav_header(rng)
    if kind == "magic":
        magic = rng.choice([b"fLaC", b"OggS", b"FORM\x00\x00\x10\x00AIFF", b"NIST_1A\n   1024\n", b"ID3\x04", b".snd"])
        return rng.choice([".flac", ".ogg", ".aiff", ".sph", ".mp3", ".au"]), magic + rng.randbytes(
            rng.choice([10, 2000])
        )
    import io

    buffer = io.BytesIO()
    rate = rng.choice([4000, 8000, 11025, 22254, 44100])
    sf.write(
        buffer,
        np.random.default_rng(rng.getrandbits(32)).standard_normal(rate // 4) * 0.1,
        rate,
        format="WAV",
        subtype=rng.choice(["PCM_16", "FLOAT", "ULAW", "GSM610", "IMA_ADPCM"]),
    )
    data = buffer.getvalue()
    if rng.random() < 0.5:  # corrupt a few bytes after the header
        data = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(min(44, len(data) - 1), len(data))] = rng.getrandbits(8)
        data = bytes(data)
    return ".wav", data


# Property runs in the suite (ANONCLI_PROPERTY_SEEDS=500 for a longer search).
SEEDS = int(os.environ.get("ANONCLI_PROPERTY_SEEDS", "20"))
_LABEL_CELLS = ["s1", "", "F", "m", "hello, there", 'say "hi"', "a;b", "x\ty", "日本", "ANG", "\u00e9", "null", "0"]
_LABEL_COLUMNS = [
    "file_name",
    "path",
    "speaker",
    "gender",
    "transcript",
    "emotion",
    "status",
    "utt_id",
    "stoi",
    "duration_s",
    "output_sample_rate",
    "",
    "Speaker",
    "sex",
    "note",
    "split",
]


def _random_labels(rng: random.Random, audio_names: list[str]) -> tuple[str, bytes]:
    kind = rng.choice(["csv", "csv", "csv", "jsonl", "bytes"])
    if kind == "bytes":
        return "metadata.csv", rng.randbytes(rng.choice([0, 10, 300]))
    columns = rng.sample(_LABEL_COLUMNS, rng.randint(1, 6))
    if rng.random() < 0.8 and "file_name" not in columns:
        columns[0] = "file_name"
    names = audio_names + ["missing.wav", "../up.wav", "/abs.wav", "a\x00b.wav", "x" * 300 + ".wav", ""]
    records = []
    for _ in range(rng.randint(0, len(audio_names) + 2)):
        records.append(
            {c: (rng.choice(names) if c in ("file_name", "path") else rng.choice(_LABEL_CELLS)) for c in columns}
        )
    if kind == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=rng.random() < 0.5) + "\n" for r in records)
        if rng.random() < 0.3:
            text += rng.choice(["[1]\n", '{"file_name": 1}\n', "{bad json\n", '{"a": {"b": [1, 2]}}\n'])
        return "metadata.jsonl", text.encode()
    sep = rng.choice([",", ";", "\t", "|"])
    lines = [sep.join(columns)]
    for record in records:
        cells = list(record.values())
        if rng.random() < 0.2:
            cells = cells[: rng.randint(0, len(cells))] + (["extra"] if rng.random() < 0.5 else [])
        lines.append(sep.join(cells))
    text = "\n".join(lines) + rng.choice(["\n", "", "\r\n", "\n\n"])
    encoding = rng.choice(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"])
    return "metadata.csv", text.encode(encoding, "replace")


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_inputs_never_end_in_an_internal_error_and_are_never_modified(tmp_path, monkeypatch, capsys, seed):
    rng = random.Random(seed)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = []
    for i in range(rng.randint(6, 12)):
        suffix, data = _random_audio_file(rng)
        suffix = ".parquet" if i == 0 and rng.random() < 0.3 else suffix
        name = f"f{i}{suffix}"
        (corpus / name).write_bytes(data)
        names.append(name)
    sf.write(corpus / "good.wav", voiced(0.3), RATE, subtype="PCM_16")
    label_name, label_data = _random_labels(rng, names + ["good.wav"])
    labels = tmp_path / label_name
    labels.write_bytes(label_data)
    before = tree_digest(corpus), labels.read_bytes()

    runs = [
        ["anonymize", corpus, "--out", tmp_path / "out", "--jobs", "1", "--no-progress"],
        ["anonymize", corpus, "--out", tmp_path / "out_labels", "--jobs", "1", "--no-progress", "--labels", labels],
        ["inspect", corpus],
        ["inspect", corpus, "--labels", labels, "--format", "json"],
        ["inspect", corpus / names[0]],  # any file, e.g. random bytes named .parquet
    ]
    for command in runs:
        code, _, err = cli(monkeypatch, capsys, *command)
        assert code in (0, 2, 3), (command, err)
        assert "anoncli: error: internal error" not in err and "Traceback" not in err, (command, err)
        if code == 2:
            one_error_line(err)
    if (tmp_path / "out").is_dir():
        code, _, err = cli(monkeypatch, capsys, "inspect", tmp_path / "out", "--check")
        assert code in (0, 3), err
        rows = read_manifest(tmp_path / "out").to_pylist()
        assert {r["source_path"] for r in rows} == {n for n in names if is_audio_name(n)} | {"good.wav"}
        assert all(r["status"] == "ok" or (r["error"] and "\n" not in r["error"]) for r in rows)
        assert next(r for r in rows if r["source_path"] == "good.wav")["status"] == "ok"
    assert (tree_digest(corpus), labels.read_bytes()) == before


def test_labels_sep_is_taken_by_inspect_as_by_anonymize(tmp_path, monkeypatch, capsys):
    root = _labelled_corpus(tmp_path / "corpus")
    labels = tmp_path / "labels.txt"
    labels.write_text("file_name:speaker\nclips/a.wav:s1\nclips/b.wav:s2\n")  # ':' is not among the sniffed separators
    code, out, err = cli(
        monkeypatch, capsys, "inspect", root, "--labels", labels, "--labels-sep", ":", "--format", "json"
    )
    assert code == 0, err
    assert "speaker" in json.loads(out)["label_columns"]
