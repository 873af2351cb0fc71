"""Mixture maker for RDAL-M: measured SNR, labels, stems, splits and the command-line tool."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from synth_audio import make_corpus

from anoncli.errors import InputError
from anoncli.mixtures import EVENT_CLASSES, list_events, make_mixtures, mix_at_snr, synth_event, synthesize_events
from anoncli.tools.make_mixtures import main as make_mixtures_main


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("speech") / "corpus", per_speaker=3, duration_s=0.8)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    return synthesize_events(tmp_path_factory.mktemp("events") / "ev", per_class=4, duration_s=1.0, seed=3)


def _rows(corpus_dir):
    with open(corpus_dir / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_synthetic_class_is_audible_and_distinct():
    rng = np.random.default_rng(0)
    waves = {k: synth_event(k, 0.5, 16000, rng) for k in EVENT_CLASSES}
    for kind, wave in waves.items():
        assert wave.shape == (8000,) and 0.3 < np.max(np.abs(wave)) <= 0.51, kind
    assert not np.allclose(waves["tone"], waves["chirp"])
    with pytest.raises(ValueError):
        synth_event("thunder", 0.5, 16000, rng)


def test_mix_at_snr_sets_the_energy_ratio():
    rng = np.random.default_rng(1)
    event, speech = rng.standard_normal(4000).astype(np.float32), 3 * rng.standard_normal(4000).astype(np.float32)
    for snr in (-5.0, 0.0, 10.0):
        mixture, scaled = mix_at_snr(event, speech, snr)
        measured = 10 * np.log10(np.sum(event.astype(np.float64) ** 2) / np.sum(scaled.astype(np.float64) ** 2))
        assert abs(measured - snr) < 1e-3
        np.testing.assert_allclose(mixture, event + scaled, atol=1e-6)


def test_mixtures_have_the_requested_snr_labels_and_stems(speech, events, tmp_path):
    corpus = make_mixtures(
        speech, events, tmp_path / "mix", snr_db=5.0, speech_fraction=0.5, duration_s=1.0, test_fraction=0.3, seed=2
    )
    rows = _rows(corpus)
    assert len(rows) == 4 * len(EVENT_CLASSES)
    with_speech = [r for r in rows if r["speech_present"] == "1"]
    assert 0 < len(with_speech) < len(rows)
    assert {r["event"] for r in rows} == set(EVENT_CLASSES)
    assert {r["split"] for r in rows} == {"train", "test"}
    for row in rows:
        mixture, rate = sf.read(corpus / row["file_name"], dtype="float64")
        event, _ = sf.read(corpus / row["clean_event"], dtype="float64")
        voice, _ = sf.read(corpus / row["clean_speech"], dtype="float64")
        assert rate == 16000 and len(mixture) == len(event) == len(voice) == 16000
        assert row["file_name"].startswith(row["event"] + "/")
        np.testing.assert_allclose(mixture, event + voice, atol=2e-4)  # 16-bit rounding of three files
        if row["speech_present"] == "1":
            measured = 10 * np.log10(np.sum(event**2) / np.sum(voice**2))
            assert abs(measured - 5.0) < 0.05, measured
            assert row["speaker"] in {"spk_a", "spk_b", "spk_c"} and row["speech_source"]
        else:
            assert np.max(np.abs(voice)) == 0 and row["speaker"] == ""
    # test mixtures use speech of speakers that train mixtures do not use
    train_speakers = {r["speaker"] for r in with_speech if r["split"] == "train"}
    test_speakers = {r["speaker"] for r in with_speech if r["split"] == "test"}
    assert not (train_speakers & test_speakers)


def test_existing_mixtures_are_not_overwritten(speech, events, tmp_path):
    make_mixtures(speech, events, tmp_path / "mix", duration_s=0.5, max_mixtures=3)
    with pytest.raises(InputError, match="already exist"):
        make_mixtures(speech, events, tmp_path / "mix", duration_s=0.5, max_mixtures=3)
    make_mixtures(speech, events, tmp_path / "mix", duration_s=0.5, max_mixtures=3, overwrite=True)


def test_events_from_a_labels_file_and_bad_folders(tmp_path, events):
    flat = tmp_path / "flat"
    flat.mkdir()
    sf.write(flat / "a.wav", np.zeros(800, dtype=np.float32) + 0.1, 16000)
    with pytest.raises(InputError, match="sub-folder"):
        list_events(flat)
    (tmp_path / "labels.csv").write_text("file_name,label\na.wav,door\n")
    assert [(f.path.name, f.event) for f in list_events(flat, tmp_path / "labels.csv")] == [("a.wav", "door")]
    with pytest.raises(InputError, match="no such events folder"):
        list_events(tmp_path / "missing")


def test_command_line_tool_synthesizes_and_mixes(speech, tmp_path, capsys):
    code = make_mixtures_main(
        [
            str(speech),
            str(tmp_path / "ev"),
            "--out",
            str(tmp_path / "out"),
            "--snr=-3:3",
            "--synthesize-events",
            "2",
            "--duration",
            "0.5",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    corpus = json.loads(capsys.readouterr().out)["corpus"]
    rows = _rows(tmp_path / "out" / "mixtures")
    assert corpus.endswith("mixtures") and len(rows) == 2 * len(EVENT_CLASSES)
    snrs = [float(r["snr_db"]) for r in rows if r["speech_present"] == "1"]
    assert snrs and all(-3 <= s <= 3 for s in snrs)
    assert make_mixtures_main([str(speech), str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")]) == 2


def _event_folder(root, name, rows, seed):
    """An audiofolder of events: metadata.csv (path, label, source_id[, fold]) and one noise clip per row."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    header = ["path", "label", "source_id"] + (["fold"] if len(rows[0]) == 3 else [])
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        path = f"wav/{name}_{i}.wav"
        (root / "wav").mkdir(exist_ok=True)
        sf.write(root / path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        lines.append(",".join([path, *row]))
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_two_event_corpora_split_by_fold_and_source_with_aliases(speech, tmp_path):
    """ESC-50-like folds decide its test split; the other corpus draws sources per class; a Freesound id in both
    corpora (123 and fs123) is one source on one side; aliases merge class names; columns name the corpus."""
    urban = _event_folder(
        tmp_path / "urban",
        "u",
        [("dog_bark", s) for s in ("123", "123", "200", "201", "202")] + [("siren", s) for s in ("300", "301")],
        1,
    )
    esc = _event_folder(
        tmp_path / "esc",
        "e",
        [("dog", "fs123", "1"), ("dog", "fs400", "1"), ("dog", "fs401", "2"), ("rain", "fs500", "1")]
        + [("rain", "fs501", "2"), ("rain", "fs502", "2")],
        2,
    )
    corpus = make_mixtures(
        speech,
        [urban, esc],
        tmp_path / "mix",
        duration_s=0.5,
        test_fraction=0.4,
        test_folds=["2"],
        event_aliases={"dog_bark": "dog"},
        seed=3,
    )
    rows = _rows(corpus)
    assert {r["event"] for r in rows} == {"dog", "siren", "rain"}
    assert {r["event_corpus"] for r in rows} == {"urban", "esc"}
    side = {}
    for r in rows:
        assert side.setdefault(r["event_source_id"], r["split"]) == r["split"], r["event_source_id"]
    assert "123" not in side and {"fs123", "fs200", "fs400", "fs401", "fs501"} <= set(side)
    assert all(side[s] == "test" for s in ("fs401", "fs501", "fs502"))  # ESC fold 2
    assert side["fs400"] == side["fs500"] == "train"  # ESC fold 1, no shared recording
    urban_dog = {r["event_source_id"] for r in rows if r["event_corpus"] == "urban" and r["event"] == "dog"}
    assert {side[s] for s in urban_dog} == {"train", "test"}  # drawn per class: both sides
    assert {r["event_fold"] for r in rows if r["event_corpus"] == "esc"} == {"1", "2"}


def test_levels_are_drawn_measured_and_the_same_mixtures_at_a_fixed_level(speech, events, tmp_path):
    from anoncli.mixtures import active_level_dbfs

    kwargs = {"snr_db": (-5.0, 10.0), "duration_s": 0.5, "test_fraction": 0.5, "seed": 5}
    ranged = _rows(make_mixtures(speech, events, tmp_path / "range", level_dbfs=(-50.0, -10.0), **kwargs))
    levels = []
    for row in ranged:
        mixture, rate = sf.read(tmp_path / "range" / "mixtures" / row["file_name"], dtype="float64")
        assert abs(active_level_dbfs(mixture, rate) - float(row["level_dbfs"])) < 0.1
        levels.append(float(row["level_dbfs"]))
        if row["speech"] == "yes":
            assert -5.0 <= float(row["snr_db"]) <= 10.0
    assert min(levels) >= -50.01 and max(levels) <= -9.99 and max(levels) - min(levels) > 15
    # the same seed at two fixed levels: the same mixtures, 25 dB apart (test split only, identical draws)
    low = make_mixtures(speech, events, tmp_path / "low", level_dbfs=-50.0, splits=["test"], **kwargs)
    high = make_mixtures(speech, events, tmp_path / "high", level_dbfs=-25.0, **kwargs)
    test_rows = [r for r in _rows(high) if r["split"] == "test"]
    assert [r["file_name"] for r in _rows(low)] == [r["file_name"] for r in test_rows]
    assert {r["split"] for r in _rows(low)} == {"test"}
    low_levels = {r["file_name"]: float(r["level_dbfs"]) for r in _rows(low)}
    for row in test_rows:
        a, _ = sf.read(low / row["file_name"], dtype="float64")
        b, _ = sf.read(high / row["file_name"], dtype="float64")
        assert low_levels[row["file_name"]] == pytest.approx(-50.0, abs=0.05)
        # -25 dBFS, or lower where the peak would clip (then the peak is at 0.95)
        level = float(row["level_dbfs"])
        assert level == pytest.approx(-25.0, abs=0.05) or (level < -25 and np.max(np.abs(b)) > 0.94)
        np.testing.assert_allclose(a * 10 ** ((level + 50) / 20), b, atol=2e-3)
    with pytest.raises(InputError, match="no mixtures"):
        make_mixtures(speech, events, tmp_path / "none", splits=["nosuch"], **kwargs)


def test_command_line_pools_event_folders_at_a_level(speech, tmp_path, capsys):
    first = synthesize_events(tmp_path / "a", per_class=3, duration_s=0.5, classes=("tone", "clicks"), seed=1)
    second = synthesize_events(tmp_path / "b", per_class=3, duration_s=0.5, classes=("chirp",), seed=2)
    args = [str(speech), str(first), "--more-events", str(second), "--event-alias", "clicks=click", "--level=-40"]
    args += ["--duration", "0.5", "--test-fraction", "0.4", "--seed", "2"]
    assert make_mixtures_main([*args, "--out", str(tmp_path / "all")]) == 0
    assert make_mixtures_main([*args, "--out", str(tmp_path / "test"), "--only-split", "test"]) == 0
    rows, test_rows = _rows(tmp_path / "all" / "mixtures"), _rows(tmp_path / "test" / "mixtures")
    assert {r["event"] for r in rows} == {"tone", "click", "chirp"} and {r["event_corpus"] for r in rows} == {"a", "b"}
    assert all(abs(float(r["level_dbfs"]) + 40) < 0.05 for r in rows)
    assert [r["file_name"] for r in test_rows] == [r["file_name"] for r in rows if r["split"] == "test"]
