
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anoncli.corpus import open_corpus
from anoncli.errors import InputError
from synth_audio import make_corpus


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


@pytest.mark.parametrize("bad_path, message", [
    ("../outside.wav", "outside the corpus"),
])
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
