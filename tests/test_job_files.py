"""Files a job leaves beside its outputs: an owner-only pseudonym mapping, no stale shard lock, readable messages."""

import csv
import fcntl
import os
import stat
from pathlib import Path

import pytest
from synth_audio import make_corpus

from anoncli.audio import read_audio
from anoncli.errors import AnoncliError, AudioError
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize


def config(corpus, out, **kw):
    return AnonymizeConfig(corpus=Path(corpus), out=Path(out), method="identity", progress=False, **kw)


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus", per_speaker=1, duration_s=0.3)


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # the usual default: a file created without an explicit mode is world-readable
    yield
    os.umask(old)


def test_the_mapping_is_a_csv_readable_by_its_owner_only_like_its_key(corpus, tmp_path, open_umask):
    mapping = tmp_path / "private" / "m.json"  # a CSV whatever the extension
    run_anonymize(config(corpus, tmp_path / "out", pseudonymize=True, mapping=mapping))
    for path in (mapping, mapping.with_name("m.json.key")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with open(mapping, newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["utt_id", "source_path", "speaker", "pseudo_utt_id", "pseudo_speaker"]
    assert not list(mapping.parent.glob(".*anoncli-tmp*"))


def test_a_finished_job_leaves_no_shard_lock_and_a_held_one_still_refuses(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out))
    assert not list((out / "manifest").glob(".lock-*"))
    lock = out / "manifest" / ".lock-part-00000-of-00001"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(AnoncliError, match="another anoncli job is writing shard 0/1"):
            run_anonymize(config(corpus, out, overwrite=True))
    assert lock.exists()  # a refused job does not remove the lock another one holds


def test_a_lock_file_removed_by_the_job_that_held_it_is_not_trusted(corpus, tmp_path, monkeypatch):
    """A job that opened the lock file just before its holder removed it must lock the file now at that name."""
    out = tmp_path / "out"
    lock = out / "manifest" / ".lock-part-00000-of-00001"
    real_flock = fcntl.flock
    locked = []  # per exclusive lock taken: whether the name still led to the locked file

    def flock(handle, operation):
        if operation & fcntl.LOCK_EX:
            if not locked:
                lock.unlink()  # the job that held it ended between this job's open and its lock
            real_flock(handle, operation)
            held = os.fstat(handle.fileno())
            locked.append(lock.exists() and os.stat(lock).st_ino == held.st_ino)
        else:
            real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    assert run_anonymize(config(corpus, out)).ok == 3
    assert locked == [False, True]  # the orphaned file was let go and the one at the name locked
    assert not lock.exists()


def test_an_undecodable_file_is_named_as_text_not_as_bytes(tmp_path):
    path = tmp_path / "not_audio.wav"
    path.write_text("not audio at all\n")
    with pytest.raises(AudioError) as caught:
        read_audio(path)
    message = str(caught.value)
    assert "b'" not in message and f"'{path}'" in message
