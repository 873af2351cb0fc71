"""Layout detection and labels on fake corpora built in each corpus's real on-disk format."""

from __future__ import annotations

import re
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf

from anoncli.corpus import describe_corpus, open_corpus
from anoncli.corpus.layouts import LAYOUTS
from anoncli.corpus.reading import read_utterance_audio
from anoncli.errors import InputError
from anoncli.testing.fake_corpora import (
    FAKE_CORPORA,
    make_emodb,
    make_fsdd,
    make_kaldi,
    make_librispeech,
    make_timit,
    write_tone,
)


def test_every_layout_has_a_fake_corpus():
    assert set(FAKE_CORPORA) == set(LAYOUTS)


@pytest.mark.parametrize("name", sorted(FAKE_CORPORA))
def test_auto_detection_gives_the_layout_ids_and_labels(name, tmp_path):
    fake = FAKE_CORPORA[name](tmp_path)
    corpus = open_corpus(fake.root)
    assert corpus.layout == fake.layout
    assert sorted(u.utt_id for u in corpus) == sorted(fake.expected)
    for utt in corpus:
        for column, value in fake.expected[utt.utt_id].items():
            assert utt.labels.get(column) == value, (utt.utt_id, column)
        assert ".." not in utt.rel_path.split("/") and not utt.rel_path.startswith("/")
    # Forcing the same layout by name gives the same corpus.
    forced = open_corpus(fake.root, layout=name)
    assert [(u.utt_id, u.labels) for u in forced] == [(u.utt_id, u.labels) for u in corpus]
    # Every utterance decodes through the one reading function.
    audio = read_utterance_audio(corpus.utterances[0])
    assert audio.sample_rate == 8000 and len(audio.samples) == 800


def test_describe_corpus_counts_labels(tmp_path):
    corpus = open_corpus(make_emodb(tmp_path).root)
    info = describe_corpus(corpus)
    assert info["layout"] == "emodb" and info["utterances"] == 14 and info["speakers"] == 2
    assert info["labels"]["gender"]["counts"] == {"female": 7, "male": 7}
    assert info["labels"]["emotion"]["distinct"] == 7


def test_metadata_table_is_merged_on_top_of_a_named_layout(tmp_path):
    fake = make_emodb(tmp_path, metadata=True)
    table = fake.root / "metadata.csv"
    # An explicit label disagreeing with the file name wins.
    table.write_text(table.read_text().replace("wav/03a01Aa.wav,03,fear", "wav/03a01Aa.wav,03,calm"))
    corpus = open_corpus(fake.root)
    assert corpus.layout == "emodb"
    assert "session" in corpus.label_columns and "emotion" in corpus.label_columns
    utt = next(u for u in corpus if u.utt_id == "03a01Aa")
    assert utt.labels["emotion"] == "calm" and utt.labels["gender"] == "male" and utt.labels["session"] == "s1"
    assert any("metadata.csv" in note and "1 value" in note for note in corpus.notes)
    assert "metadata.csv" in corpus.labels_source


def test_a_wrong_forced_layout_and_an_unknown_name_are_refused(tmp_path):
    root = make_fsdd(tmp_path).root
    with pytest.raises(InputError, match="EmoDB"):
        open_corpus(root, layout="emodb")
    with pytest.raises(InputError) as err:
        open_corpus(root, layout="swbd")
    assert "librispeech" in str(err.value) and "kaldi" in str(err.value)


def test_a_half_recognised_folder_lists_the_layouts_tried(tmp_path):
    make_emodb(tmp_path / "mix")
    make_fsdd(tmp_path / "mix2")
    root = tmp_path / "mixed"
    shutil.copytree(tmp_path / "mix" / "emodb" / "wav", root / "a")
    shutil.copytree(tmp_path / "mix2" / "free-spoken-digit-dataset" / "recordings", root / "b")
    for i in range(6):  # tip the balance so neither layout covers 90 %
        write_tone(root / "c" / f"take{i}.wav", i)
    with pytest.raises(InputError) as err:
        open_corpus(root)
    message = str(err.value)
    assert "tried" in message and "emodb" in message and "fsdd" in message and "--layout" in message
    assert "\n" not in message
    assert open_corpus(root, layout="plain").layout == "plain"


def test_a_few_strays_in_a_known_corpus_are_kept_without_labels(tmp_path):
    root = make_emodb(tmp_path).root
    write_tone(root / "wav" / "readme_tone.wav", 1)
    corpus = open_corpus(root)
    assert corpus.layout == "emodb" and len(corpus) == 15
    stray = next(u for u in corpus if u.utt_id == "wav/readme_tone")
    assert stray.labels["emotion"] is None
    assert any("do not follow" in note for note in corpus.notes)


def test_librispeech_subset_folder_finds_speakers_txt_in_the_parent(tmp_path):
    fake = make_librispeech(tmp_path)
    corpus = open_corpus(fake.root / "dev-clean")
    assert corpus.layout == "librispeech"
    assert {u.labels["gender"] for u in corpus} == {"female", "male"}


def test_timit_reads_nist_sphere_and_skips_converted_copies(tmp_path):
    fake = make_timit(tmp_path)
    original = fake.root / "TRAIN" / "DR1" / "FCJF0" / "SA1.WAV"
    assert original.read_bytes()[:7] == b"NIST_1A"
    data, rate = sf.read(str(original))
    shutil.copy(original, original.with_name("SA1.WAV.wav"))  # Kaggle-style duplicate
    corpus = open_corpus(fake.root)
    assert corpus.layout == "timit" and len(corpus) == 4
    utt = next(u for u in corpus if u.utt_id == "FCJF0_SA1")
    assert np.allclose(read_utterance_audio(utt).samples, data, atol=1e-4)
    assert any("converted" in note for note in corpus.notes)


def test_audiofolder_jsonl_and_value_normalisation(tmp_path):
    fake = FAKE_CORPORA["audiofolder"](tmp_path)
    rows = (fake.root / "metadata.csv").read_text().splitlines()
    (fake.root / "metadata.csv").unlink()
    import csv  # noqa: E401
    import json

    records = list(csv.DictReader(rows))
    records[0]["emotion"] = "ANG"
    (fake.root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    corpus = open_corpus(fake.root)
    assert corpus.layout == "audiofolder"
    assert next(u for u in corpus if u.utt_id == "clips/a").labels == {
        "speaker": "alice",
        "gender": "female",
        "emotion": "anger",
    }


def test_kaldi_piped_command_is_refused_unless_allowed(tmp_path):
    fake = make_kaldi(tmp_path)
    scp = fake.root / "wav.scp"
    source = tmp_path / "kaldi_audio" / "spk1-utt2.wav"
    lines = scp.read_text().splitlines()
    lines[1] = f"spk1-utt2 cat {source} |"
    scp.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        open_corpus(fake.root)
    assert str(scp) in str(err.value) and "line 2" in str(err.value) and "--allow-commands" in str(err.value)
    corpus = open_corpus(fake.root, allow_commands=True)
    utt = next(u for u in corpus if u.utt_id == "spk1-utt2")
    assert utt.command == f"cat {source}"
    assert np.allclose(read_utterance_audio(utt).samples, sf.read(str(source), dtype="float32")[0])
    assert any("piped" in note for note in corpus.notes)


def test_kaldi_ids_become_safe_output_paths_and_missing_files_name_the_line(tmp_path):
    fake = make_kaldi(tmp_path)
    for name in ("wav.scp", "utt2spk", "text", "utt2emo"):
        path = fake.root / name
        path.write_text(re.sub(r"(?m)^spk2-utt1 ", "../../etc/passwd ", path.read_text()))
    (fake.root / "spk2gender").write_text("spk1 f\nspk2 m\n")
    corpus = open_corpus(fake.root)
    utt = next(u for u in corpus if u.utt_id == "../../etc/passwd")
    assert utt.rel_path == "spk2/_.._etc_passwd.wav"
    scp = fake.root / "wav.scp"
    scp.write_text(scp.read_text().replace("local_wav/spk1-utt1.wav", "local_wav/gone.wav"))
    with pytest.raises(InputError, match=r"wav\.scp: line 1: 'local_wav/gone\.wav' does not exist"):
        open_corpus(fake.root)


def test_forced_kaldi_on_a_folder_without_tables_is_refused(tmp_path):
    root = make_fsdd(tmp_path).root
    with pytest.raises(InputError, match="needs wav.scp"):
        open_corpus(root, layout="kaldi")


def test_real_corpus_copies_without_metadata_need_no_labels_file(tmp_path):
    """The shape of the emodb-dev/fsdd check: a named corpus stripped of metadata.csv keeps its labels."""
    fake = make_emodb(tmp_path, metadata=True)
    (fake.root / "metadata.csv").unlink()
    corpus = open_corpus(fake.root)
    assert corpus.layout == "emodb" and corpus.labels_source is None
    assert {u.labels["emotion"] for u in corpus} == {
        "anger",
        "boredom",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "neutral",
    }


def test_walk_keeps_only_shallow_side_files(tmp_path):
    from anoncli.corpus.walk import WalkStats, iter_audio_files

    fake = make_timit(tmp_path)
    stats = WalkStats()
    list(iter_audio_files(fake.root, stats))
    assert stats.ignored_files == 8  # .TXT and .WRD of four utterances
    assert stats.side_files == []  # all of them deeper than the marker depth


@pytest.mark.skipif(sys.platform == "win32", reason="bash pipelines")
def test_failing_command_is_an_audio_error(tmp_path):
    from anoncli.errors import AudioError

    fake = make_kaldi(tmp_path)
    scp = fake.root / "wav.scp"
    lines = scp.read_text().splitlines()
    lines[2] = "spk2-utt1 false |"
    scp.write_text("\n".join(lines) + "\n")
    utt = next(u for u in open_corpus(fake.root, allow_commands=True) if u.utt_id == "spk2-utt1")
    with pytest.raises(AudioError, match="exited with 1"):
        read_utterance_audio(utt)


def test_vctk_080_layout_with_numeric_ids(tmp_path):
    root = tmp_path / "VCTK-Corpus"
    root.mkdir()
    (root / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION\n225  23  F    English    Southern  England\n"
    )
    write_tone(root / "wav48" / "p225" / "p225_001.wav", 1)
    (root / "txt" / "p225").mkdir(parents=True)
    (root / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    corpus = open_corpus(root)
    assert corpus.layout == "vctk"
    assert corpus.utterances[0].utt_id == "p225_001"
    assert corpus.utterances[0].labels == {
        "speaker": "p225",
        "gender": "female",
        "age": "23",
        "accent": "English",
        "region": "Southern England",
        "transcript": "Please call Stella.",
        "mic": None,
    }


def test_missing_side_tables_leave_labels_empty_with_a_note(tmp_path):
    from anoncli.testing.fake_corpora import make_cremad

    fake = make_cremad(tmp_path)
    (fake.root / "VideoDemographics.csv").unlink()
    corpus = open_corpus(fake.root)
    assert corpus.layout == "cremad"
    assert {u.labels["gender"] for u in corpus} == {None}
    assert {u.labels["emotion"] for u in corpus} == {"anger", "happiness", "sadness"}
    assert any("VideoDemographics.csv" in note for note in corpus.notes)


def test_a_symlink_to_an_ancestor_does_not_loop(tmp_path):
    root = make_emodb(tmp_path).root
    (root / "wav" / "again").symlink_to(root)
    corpus = open_corpus(root)
    assert corpus.layout == "emodb" and len({u.utt_id for u in corpus}) == len(corpus)


def test_mp3_copies_of_wav_utterances_are_skipped(tmp_path):
    from anoncli.testing.fake_corpora import make_cremad

    fake = make_cremad(tmp_path)
    shutil.copytree(fake.root / "AudioWAV", fake.root / "AudioMP3")
    for path in (fake.root / "AudioMP3").iterdir():
        path.rename(path.with_suffix(".mp3"))
    corpus = open_corpus(fake.root)
    assert len(corpus) == len(fake.expected)
    assert all(u.rel_path.startswith("AudioWAV/") for u in corpus)
    assert any("skipped" in note for note in corpus.notes)


def test_label_table_column_aliases_are_normalised(tmp_path):
    fake = FAKE_CORPORA["plain"](tmp_path)
    (fake.root / "metadata.csv").write_text(
        "file_name,Speaker_ID,Sex,sentence,text\ninterview_1.wav,s1,F,hello there,raw\n"
    )
    corpus = open_corpus(fake.root)
    assert corpus.label_columns == ["speaker", "gender", "transcript", "text"]
    utt = next(u for u in corpus if u.utt_id == "interview_1")
    assert utt.labels == {"speaker": "s1", "gender": "female", "transcript": "hello there", "text": "raw"}


def test_audiofolder_with_one_table_per_split(tmp_path):
    root = tmp_path / "hf"
    for split, speaker in (("train", "a"), ("test", "b")):
        write_tone(root / split / "clips" / "x.wav", 1)
        (root / split / "metadata.csv").write_text(f"file_name,speaker\nclips/x.wav,{speaker}\n")
    write_tone(root / "extra.wav", 2)
    corpus = open_corpus(root)
    assert corpus.layout == "audiofolder"
    assert {u.utt_id: (u.speaker, u.labels["split"]) for u in corpus} == {
        "train/clips/x": ("a", "train"),
        "test/clips/x": ("b", "test"),
        "extra": (None, None),
    }
    assert any("1 audio file(s) are not listed" in note for note in corpus.notes)


def test_unreadable_vctk_speaker_info_is_an_input_error_naming_it(tmp_path):
    import pytest

    from anoncli.corpus.layouts.vctk import read_speaker_info
    from anoncli.errors import InputError

    folder = tmp_path / "speaker-info.txt"
    folder.mkdir()  # open() fails with an OSError, as for a file without read permission
    with pytest.raises(InputError, match="speaker-info.txt: cannot read"):
        read_speaker_info(folder)
