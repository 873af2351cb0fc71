"""Bad and unusual inputs: failures are recorded per file, odd-but-valid files are processed."""

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_audio import voiced

from anoncli.audio import peak_safe, read_audio, write_audio
from anoncli.errors import AudioError
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.manifest.reader import read_manifest

METHOD = "mcadams"


def _write_inputs(root: Path) -> dict[str, str]:
    """Returns rel path -> expected status."""
    root.mkdir(parents=True)
    expected = {}
    (root / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "failed"
    sf.write(root / "full.wav", voiced(1.0), 16000, subtype="PCM_16")
    data = (root / "full.wav").read_bytes()
    (root / "truncated.wav").write_bytes(data[: len(data) // 2])
    expected["truncated.wav"] = "failed"
    expected["full.wav"] = "ok"
    (root / "text.wav").write_text("hello, I am a text file\n" * 20)
    expected["text.wav"] = "failed"
    nan = voiced(0.5)
    nan[100:200] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    expected["nan.wav"] = "failed"
    stereo = np.stack([voiced(0.5), voiced(0.5, f0=200)], axis=1)
    sf.write(root / "stereo.wav", stereo, 16000, subtype="PCM_16")
    expected["stereo.wav"] = "ok"
    sf.write(root / "rate8k.wav", voiced(0.5, rate=8000), 8000, subtype="PCM_16")
    expected["rate8k.wav"] = "ok"
    sf.write(root / "rate48k.flac", voiced(0.5, rate=48000), 48000, subtype="PCM_24")
    expected["rate48k.flac"] = "ok"
    sf.write(root / "short.wav", voiced(0.05), 16000, subtype="PCM_16")
    expected["short.wav"] = "ok"
    ten_minutes = np.tile(voiced(2.0), 300)
    sf.write(root / "long.wav", ten_minutes, 16000, subtype="PCM_16")
    expected["long.wav"] = "ok"
    return expected


def test_bad_inputs_fail_alone_and_good_ones_pass(tmp_path):
    corpus = tmp_path / "corpus"
    expected = _write_inputs(corpus)
    out = tmp_path / "out"
    summary = run_anonymize(AnonymizeConfig(corpus=corpus, out=out, method=METHOD, progress=False, batch_size=4))
    rows = {r["source_path"]: r for r in read_manifest(out).to_pylist()}
    assert {k: r["status"] for k, r in rows.items()} == expected
    assert summary.failed == sum(v == "failed" for v in expected.values())
    for rel, status in expected.items():
        row = rows[rel]
        if status == "failed":
            assert row["error"] and "\n" not in row["error"] and rel in row["error"], row
            continue
        info = sf.info(out / row["output_path"])
        source = sf.info(corpus / rel)
        assert info.samplerate == source.samplerate and info.channels == 1 and info.subtype == "PCM_16"
        assert abs(info.frames - source.frames) <= 1
    assert "truncated" in rows["truncated.wav"]["error"]
    assert "NaN" in rows["nan.wav"]["error"]
    assert "empty" in rows["empty.wav"]["error"]


def test_read_audio_mixes_stereo_to_mono(tmp_path):
    left, right = voiced(0.2), voiced(0.2, f0=220)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    audio = read_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(audio.samples, (left + right) / 2, atol=1e-6)


def test_peak_safe_scales_only_when_needed():
    quiet = np.array([0.1, -0.5], dtype=np.float32)
    assert peak_safe(quiet) is quiet
    loud = np.array([2.0, -1.0], dtype=np.float32)
    assert np.max(np.abs(peak_safe(loud))) <= 1.0
    np.testing.assert_allclose(peak_safe(loud)[1] / peak_safe(loud)[0], -0.5)


def test_outputs_carry_no_metadata_chunks(tmp_path):
    path = tmp_path / "tagged.wav"
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as handle:
        handle.title = "Speaker Alice Example, recorded at home"
        handle.artist = "Alice Example"
        handle.write(voiced(0.3))
    assert b"Alice" in path.read_bytes()
    audio = read_audio(path)
    write_audio(tmp_path / "out.wav", audio.samples, audio.sample_rate)
    written = (tmp_path / "out.wav").read_bytes()
    assert b"Alice" not in written and b"LIST" not in written


def test_unreadable_reason_is_one_line(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF" + struct.pack("<I", 4) + b"WAVE")
    with pytest.raises(AudioError) as err:
        read_audio(tmp_path / "x.wav")
    assert "x.wav" in str(err.value) and "\n" not in str(err.value)
