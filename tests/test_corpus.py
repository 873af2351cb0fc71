import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synth_audio import make_corpus

from anoncli.corpus import open_corpus
from anoncli.errors import InputError


def test_walk_finds_audio_recursively_and_counts_the_rest(tmp_path):
    root = make_corpus(tmp_path / "c")
    (root / "notes.txt").write_text("not audio")
    (root / "spk_a" / "deep").mkdir()
    (root / "spk_a" / "deep" / "x.flac").write_bytes((root / "spk_a" / "spk_a_0.wav").read_bytes())
    corpus = open_corpus(root)
    ids = [u.utt_id for u in corpus]
    assert len(ids) == 10
    assert ids == sorted(ids)
    assert "spk_a/deep/x" in ids
    assert corpus.ignored_files >= 2  # notes.txt and metadata.csv


def test_ids_are_stable_and_labels_come_from_metadata(tmp_path):
    root = make_corpus(tmp_path / "c")
    first = open_corpus(root)
    second = open_corpus(root)
    assert [u.utt_id for u in first] == [u.utt_id for u in second]
    utt = next(u for u in first if u.utt_id == "spk_b/spk_b_1")
    assert utt.speaker == "spk_b"
    assert utt.labels["gender"] == "male"
    assert utt.labels["transcript"] == "word 1"
    assert set(first.label_columns) == {"speaker", "gender", "transcript"}


def test_labels_file_in_parquet(tmp_path):
    root = make_corpus(tmp_path / "c", metadata=False)
    table = pa.table({"path": ["spk_a/spk_a_0.wav"], "speaker": ["alice"], "emotion": ["anger"]})
    pq.write_table(table, tmp_path / "labels.parquet")
    corpus = open_corpus(root, tmp_path / "labels.parquet")
    utt = next(u for u in corpus if u.utt_id == "spk_a/spk_a_0")
    assert utt.labels == {"speaker": "alice", "emotion": "anger"}


@pytest.mark.parametrize(
    "bad_path, message",
    [
        ("../outside.wav", "outside the corpus"),
    ],
)
def test_bad_label_rows_name_the_line(tmp_path, bad_path, message):
    root = make_corpus(tmp_path / "c", metadata=False)
    (tmp_path / "outside.wav").write_bytes((root / "spk_a" / "spk_a_0.wav").read_bytes())
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file_name,speaker\nspk_a/spk_a_0.wav,a\n{bad_path},b\n")
    with pytest.raises(InputError) as err:
        open_corpus(root, labels)
    assert "line 3" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_label_rows_of_files_not_in_the_corpus_are_left_out_with_a_warning(tmp_path, capsys):
    # a subset of a corpus keeps the whole corpus's table: rows of the files it lacks are left out, and the
    # files the table does not label are named too; a table naming no file of the corpus at all is an error
    root = make_corpus(tmp_path / "c", metadata=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("file_name,speaker\nspk_a/spk_a_0.wav,a\nspk_a/missing.wav,b\nelsewhere/x.wav,c\n")
    corpus = open_corpus(root, labels)
    warnings = capsys.readouterr().err
    assert "2 row(s) of" in warnings and "name a file that is not in the corpus" in warnings
    unlabelled = len(corpus.utterances) - 1
    assert f"{unlabelled} audio file(s) are not listed in" in warnings
    assert {u.labels.get("speaker") for u in corpus.utterances if u.rel_path == "spk_a/spk_a_0.wav"} == {"a"}
    assert any("left out" in note for note in corpus.notes)
    labels.write_text("file_name,speaker\nother/y.wav,a\n")
    with pytest.raises(InputError, match="none of its 1 rows names a file"):
        open_corpus(root, labels)


def test_missing_corpus_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        open_corpus(tmp_path / "nope")


MISSING_MARKERS = ["", "NA", "N/A", "NaN", "null", "None", "-", "na", " n/a ", "NULL", "nan"]


def test_missing_value_markers_are_missing_labels_not_classes(tmp_path):
    from anoncli.corpus import describe_corpus
    from anoncli.evaluation.attribute import candidate_columns

    root = make_corpus(tmp_path / "c", per_speaker=6, metadata=False)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    lines = ["file_name,speaker,gender,emotion,zip,transcript"]
    for i, name in enumerate(files):
        marker = MISSING_MARKERS[i % len(MISSING_MARKERS)]
        labelled = i % 3 == 0
        gender = ("female" if name.startswith("spk_a") else "male") if labelled else marker
        emotion = "ANG" if labelled else marker
        speaker = marker if i == 1 else name.split("/")[0]
        lines.append(f'{name},"{speaker}","{gender}","{emotion}","{marker if i % 2 else "02134"}","{marker}"')
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    corpus = open_corpus(root)
    described = describe_corpus(corpus)["labels"]
    unlabelled = sum(1 for i in range(len(files)) if i % 3)
    assert described["gender"]["missing"] == unlabelled and set(described["gender"]["counts"]) == {"female", "male"}
    assert described["emotion"]["missing"] == unlabelled and set(described["emotion"]["counts"]) == {"anger"}
    assert described["speaker"]["missing"] == 1 and set(described["speaker"]["counts"]) == {"spk_a", "spk_b", "spk_c"}
    assert described["zip"]["counts"] == {"02134": (len(files) + 1) // 2}
    # The transcript is text: an utterance may say "None"; only an empty cell is missing there.
    assert described["transcript"]["missing"] == sum(1 for i in range(len(files)) if MISSING_MARKERS[i % 11] == "")
    assert "NA" in described["transcript"]["counts"]
    specs, _ = candidate_columns([u.labels for u in corpus], [u.speaker for u in corpus], corpus.label_columns)
    classes = {s.column: s.classes for s in specs}
    assert all(
        c is not None and c.strip().lower() not in {m.strip().lower() for m in MISSING_MARKERS}
        for values in classes.values()
        for c in values
    ), classes
    assert "zip" not in classes and set(classes["speaker"]) == {"spk_a", "spk_b", "spk_c"}


def test_a_missing_marker_in_a_table_does_not_erase_a_label_from_the_file_names(tmp_path):
    from anoncli.testing.fake_corpora import make_emodb

    fake = make_emodb(tmp_path / "in")
    stems = sorted(fake.expected)
    rows = ["file_name,gender,emotion"] + [f"wav/{stem}.wav,NA,N/A" for stem in stems]
    (fake.root / "metadata.csv").write_text("\n".join(rows) + "\n")
    corpus = open_corpus(fake.root)
    for utt in corpus:
        assert utt.labels["gender"] == fake.expected[utt.utt_id]["gender"]
        assert utt.labels["emotion"] == fake.expected[utt.utt_id]["emotion"]


def test_missing_markers_in_kaldi_tables_are_missing(tmp_path):
    from anoncli.corpus import describe_corpus
    from anoncli.testing.fake_corpora import make_kaldi

    fake = make_kaldi(tmp_path / "in")
    speakers = sorted({line.split()[1] for line in (fake.root / "utt2spk").read_text().splitlines()})
    (fake.root / "spk2gender").write_text("".join(f"{s} {'NA' if i else 'f'}\n" for i, s in enumerate(speakers)))
    described = describe_corpus(open_corpus(fake.root))["labels"]["gender"]
    assert described["counts"] == {"female": sum(1 for u in open_corpus(fake.root) if u.speaker == speakers[0])}
    assert described["missing"] > 0
