"""The anonymize job: shards, resume, overwrite, retries, pseudonyms, refusal to write into the input."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth_audio import make_corpus

from anoncli.errors import AnoncliError, InputError
from anoncli.jobs.engine import AnonymizeConfig, plan, run_anonymize
from anoncli.jobs.sharding import parse_shard, select_shard
from anoncli.manifest.reader import read_manifest


def config(corpus, out, **kw):
    kw.setdefault("method", "identity")
    kw.setdefault("progress", False)
    return AnonymizeConfig(corpus=Path(corpus), out=Path(out), **kw)


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus", per_speaker=4, duration_s=0.3)


def test_shards_are_disjoint_and_cover_the_corpus(corpus, tmp_path):
    out = tmp_path / "out"
    for k in range(3):
        summary = run_anonymize(config(corpus, out, shard=(k, 3)))
        assert summary.failed == 0
    table = read_manifest(out)
    ids = table.column("utt_id").to_pylist()
    assert len(ids) == len(set(ids)) == 12
    parts = sorted(p.name for p in (out / "manifest").glob("part-*.parquet"))
    assert parts == [f"part-{k:05d}-of-00003.parquet" for k in range(3)]
    import pyarrow.parquet as pq

    shard_sets = [set(pq.read_table(out / "manifest" / p, columns=["utt_id"]).column(0).to_pylist()) for p in parts]
    assert set().union(*shard_sets) == set(ids)
    assert sum(len(s) for s in shard_sets) == len(ids)
    assert shard_sets[1] == set(select_shard(sorted(ids), 1, 3))


def test_parse_shard_reads_slurm_variables(capsys):
    assert parse_shard("auto", {}) == (0, 1)  # outside an array job: the whole corpus, with a warning
    assert "not a Slurm array job" in capsys.readouterr().err
    assert parse_shard("2/5") == (2, 5)
    assert parse_shard(None) == (0, 1)
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("auto", env) == (3, 4)
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard("auto", env) == (3, 4)
    for bad in ("4/4", "x/2", "1", "-1/3"):
        with pytest.raises(AnoncliError):
            parse_shard(bad)


def test_rerun_skips_done_work_and_overwrite_redoes_it(corpus, tmp_path):
    out = tmp_path / "out"
    first = run_anonymize(config(corpus, out))
    assert first.ok == 12
    mtime = (out / "spk_a" / "spk_a_0.wav").stat().st_mtime_ns
    again = run_anonymize(config(corpus, out))
    assert again.processed == 0 and again.skipped == 12
    assert (out / "spk_a" / "spk_a_0.wav").stat().st_mtime_ns == mtime
    redo = run_anonymize(config(corpus, out, overwrite=True))
    assert redo.processed == 12
    ids = read_manifest(out).column("utt_id").to_pylist()
    assert len(ids) == len(set(ids)) == 12


def test_a_rerun_redoes_inputs_whose_bytes_changed(corpus, tmp_path):
    import hashlib
    import os

    out = tmp_path / "out"
    run_anonymize(config(corpus, out))
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    source = corpus / "spk_a" / "spk_a_0.wav"
    assert rows["spk_a/spk_a_0"]["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert rows["spk_a/spk_a_0"]["source_size"] == source.stat().st_size
    # a new time with the same bytes (a copied corpus): nothing to redo
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert run_anonymize(config(corpus, out)).processed == 0
    # the same size, other samples: redone, and said so
    wave, rate = sf.read(source)
    sf.write(source, wave[::-1], rate)
    before = (out / "spk_a" / "spk_a_0.wav").read_bytes()
    assert plan(config(corpus, out)).changed == ["spk_a/spk_a_0.wav"]
    again = run_anonymize(config(corpus, out))
    assert again.processed == 1 and again.skipped == 11
    assert any("1 input file(s) changed" in line for line in again.warnings)
    assert (out / "spk_a" / "spk_a_0.wav").read_bytes() != before
    ids = read_manifest(out).column("utt_id").to_pylist()
    assert len(ids) == len(set(ids)) == 12
    assert run_anonymize(config(corpus, out)).processed == 0  # the new stamp is recorded


def test_failed_files_are_recorded_and_retried_only_on_request(corpus, tmp_path):
    out = tmp_path / "out"
    (corpus / "spk_a" / "broken.wav").write_text("this is not audio")
    summary = run_anonymize(config(corpus, out))
    assert summary.failed == 1 and summary.ok == 12
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    assert rows["spk_a/broken"]["status"] == "failed"
    assert "broken.wav" in rows["spk_a/broken"]["error"] or "decode" in rows["spk_a/broken"]["error"]
    assert run_anonymize(config(corpus, out)).processed == 0
    sf.write(corpus / "spk_a" / "broken.wav", np.zeros(8000, dtype=np.float32) + 0.1, 16000)
    retried = run_anonymize(config(corpus, out, retry_failed=True))
    assert retried.processed == 1 and retried.ok == 1
    rows = {r["utt_id"]: r for r in read_manifest(out).to_pylist()}
    assert rows["spk_a/broken"]["status"] == "ok" and len(rows) == 13


def test_manifest_rows_carry_labels_and_run_config(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out, seed=7))
    table = read_manifest(out)
    row = next(r for r in table.to_pylist() if r["utt_id"] == "spk_b/spk_b_2")
    assert row["speaker"] == "spk_b" and row["gender"] == "male" and row["transcript"] == "word 2"
    assert row["source_path"] == "spk_b/spk_b_2.wav" and row["output_path"] == "spk_b/spk_b_2.wav"
    assert row["method"] == "identity" and row["status"] == "ok" and row["sample_rate"] == 16000
    assert abs(row["duration_s"] - 0.3) < 1e-3
    assert isinstance(json.loads(row["params"]), dict)
    meta = json.loads(table.schema.metadata[b"anoncli.config"])
    assert meta["seed"] == 7 and meta["method"] == "identity"
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["ok"] == 12 and "torch" in run["versions"]


def test_params_column_holds_the_utterance_draws_and_the_method_settings_are_stored_once(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out, method="mcadams", seed=3))
    table = read_manifest(out)
    params = [json.loads(p) for p in table.column("params").to_pylist()]
    assert all(set(p) == {"alpha", "highpass"} for p in params)
    assert len({p["alpha"] for p in params}) > 1  # drawn per utterance
    method_config = json.loads(table.schema.metadata[b"anoncli.config"])["method_config"]
    assert method_config["lpc_order"] > 0 and "lpc_order" not in params[0]
    assert json.loads((out / "run.json").read_text())["config"]["method_config"] == method_config


def test_output_format_and_rate(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out, fmt="flac", output_sample_rate=8000))
    info = sf.info(out / "spk_c" / "spk_c_1.flac")
    assert info.samplerate == 8000 and info.subtype == "PCM_16" and info.format == "FLAC"


def test_out_inside_input_is_refused(corpus):
    for out in (corpus, corpus / "anon"):
        with pytest.raises(InputError, match="must not be the input corpus"):
            run_anonymize(config(corpus, out))
    assert not (corpus / "anon").exists()


def test_input_files_are_never_modified(corpus, tmp_path):
    before = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    run_anonymize(config(corpus, tmp_path / "out"))
    after = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
    assert before == after


def test_changed_settings_on_resume_are_refused(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out, seed=1))
    with pytest.raises(AnoncliError, match="other settings"):
        run_anonymize(config(corpus, out, seed=2))


def test_pseudonymize_hides_ids_and_writes_mapping_outside(corpus, tmp_path):
    out, mapping = tmp_path / "out", tmp_path / "private" / "mapping.csv"
    with pytest.raises(AnoncliError, match="--mapping"):
        run_anonymize(config(corpus, out, pseudonymize=True))
    with pytest.raises(InputError, match="outside"):
        run_anonymize(config(corpus, out, pseudonymize=True, mapping=out / "m.csv"))
    run_anonymize(config(corpus, out, pseudonymize=True, mapping=mapping))
    table = read_manifest(out).to_pylist()
    assert all(r["source_path"] is None for r in table)
    assert all(r["source_sha256"] is None and r["source_size"] is None for r in table)  # a hash would link to the input
    assert not any("spk_" in (r["utt_id"] + (r["speaker"] or "") + r["output_path"]) for r in table)
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".wav"):
            assert "spk_a" not in path.name
    assert "mapping" not in (out / "run.json").read_text().split('"mapping": null')[0][-20:]
    with open(mapping) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    speakers = {r["speaker"]: r["pseudo_speaker"] for r in rows}
    assert len(set(speakers.values())) == 3
    assert {r["pseudo_utt_id"] for r in rows} == {r["utt_id"] for r in table}
    # resume recognises the pseudonymised rows
    assert run_anonymize(config(corpus, out, pseudonymize=True, mapping=mapping)).processed == 0


def test_pseudonymized_seeds_and_draws_cannot_be_matched_with_a_plain_run(corpus, tmp_path):
    # the plain run's seed of an utterance is public (derived from its id and --seed); a pseudonymized run
    # must not repeat it, or joining the two manifests on seed (or on alpha) would undo the pseudonyms
    plain = tmp_path / "plain"
    run_anonymize(config(corpus, plain, method="mcadams"))
    hidden = tmp_path / "hidden"
    run_anonymize(config(corpus, hidden, method="mcadams", pseudonymize=True, mapping=tmp_path / "map" / "m.csv"))
    plain_rows, hidden_rows = read_manifest(plain).to_pylist(), read_manifest(hidden).to_pylist()
    assert len(hidden_rows) == 12
    assert not {r["seed"] for r in plain_rows} & {r["seed"] for r in hidden_rows}
    assert not {r["params"] for r in plain_rows} & {r["params"] for r in hidden_rows}
    again = tmp_path / "again"  # the same key (kept next to the mapping) gives the same draws: reproducible
    run_anonymize(config(corpus, again, method="mcadams", pseudonymize=True, mapping=tmp_path / "map" / "m.csv"))
    assert sorted(r["seed"] for r in read_manifest(again).to_pylist()) == sorted(r["seed"] for r in hidden_rows)


def test_an_output_deleted_after_the_run_is_redone_by_a_rerun(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out))
    lost = out / "spk_a" / "spk_a_0.wav"
    kept = out / "spk_b" / "spk_b_1.wav"
    kept_bytes = kept.read_bytes()
    lost.unlink()
    cut = out / "spk_c" / "spk_c_2.wav"
    cut.write_bytes(cut.read_bytes()[:100])  # cut short: its header no longer matches its size
    job = plan(config(corpus, out))
    assert sorted(job.lost) == ["spk_a/spk_a_0.wav", "spk_c/spk_c_2.wav"] and len(job.todo) == 2
    summary = run_anonymize(config(corpus, out))
    assert summary.ok == 2 and lost.is_file() and kept.read_bytes() == kept_bytes
    assert sf.info(str(cut)).frames > 0
    assert any("missing" in w and "spk_a/spk_a_0.wav" in w for w in summary.warnings)
    assert len(read_manifest(out)) == 12  # the old rows were replaced, not duplicated


def test_an_output_folder_holds_one_corpus_and_nothing_else(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out))
    other = tmp_path / "other"
    shutil.copytree(corpus, other)
    for overwrite in (False, True):  # --overwrite redoes this corpus's files; the other's rows would stay
        with pytest.raises(AnoncliError, match="another corpus"):
            run_anonymize(config(other, out, overwrite=overwrite))
    moved = tmp_path / "moved"
    corpus.rename(moved)  # the first corpus moved: its old path is gone, so the folder is resumed
    try:
        assert run_anonymize(config(moved, out)).skipped == 12
    finally:
        moved.rename(corpus)
    # the recorded folder is gone again; a corpus with none of OUT's files is another corpus, not a moved one
    unrelated = make_corpus(tmp_path / "unrelated", per_speaker=1, duration_s=0.3)
    for wav in unrelated.rglob("*.wav"):
        wav.rename(wav.with_name("x" + wav.name))
    (unrelated / "metadata.csv").unlink()
    with pytest.raises(AnoncliError, match="none of its files is in"):
        run_anonymize(config(unrelated, out))
    stranger = tmp_path / "hf-export"
    (stranger / "wav").mkdir(parents=True)
    (stranger / "metadata.csv").write_text("file_name\n")
    with pytest.raises(InputError, match="holds other files"):
        run_anonymize(config(corpus, stranger))


def test_a_second_job_on_the_same_shard_of_out_is_refused(corpus, tmp_path):
    import fcntl

    out = tmp_path / "out"
    run_anonymize(config(corpus, out, shard=(0, 2)))
    lock = out / "manifest" / ".lock-part-00000-of-00002"
    with open(lock, "a") as held:  # what a running job holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(AnoncliError, match="another anoncli job is writing shard 0/2"):
            run_anonymize(config(corpus, out, shard=(0, 2), overwrite=True))
        assert run_anonymize(config(corpus, out, shard=(1, 2))).ok == 6  # another shard may run meanwhile
    assert run_anonymize(config(corpus, out, shard=(0, 2), overwrite=True)).ok == 6  # released: runs again


def test_per_speaker_without_speaker_labels_is_warned_about(tmp_path):
    corpus = make_corpus(tmp_path / "plain", per_speaker=2, duration_s=0.3, metadata=False)
    summary = run_anonymize(config(corpus, tmp_path / "out", method="mcadams", per_speaker=True))
    assert any("--per-speaker: 6 file(s) have no speaker label" in w for w in summary.warnings)


def test_an_output_scaled_to_fit_16_bits_says_so_in_its_note(tmp_path):
    folder = tmp_path / "loud"
    folder.mkdir()
    t = np.arange(8000) / 16000
    sf.write(folder / "loud.wav", (4.0 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000, subtype="FLOAT")
    run_anonymize(config(folder, tmp_path / "out"))  # identity: the float input's peak 4 is above full scale
    (row,) = read_manifest(tmp_path / "out").to_pylist()
    assert "output scaled by -12.0 dB to fit the 16-bit range (peak 4)" in row["note"]
    assert float(np.max(np.abs(sf.read(tmp_path / "out" / "loud.wav")[0]))) < 1.0


def test_level_change_db_is_measured_on_the_file_as_written(tmp_path):
    folder = tmp_path / "loud"
    folder.mkdir()
    t = np.arange(16000) / 16000
    sf.write(folder / "loud.wav", (4.0 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000, subtype="FLOAT")
    sf.write(folder / "quiet.wav", (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000, subtype="FLOAT")
    run_anonymize(config(folder, tmp_path / "out"))  # identity: only the peak-safe scaling changes the level
    rows = {row["utt_id"]: row for row in read_manifest(tmp_path / "out").to_pylist()}
    for name, expected in (("loud", 20 * np.log10(0.999 / 4.0)), ("quiet", 0.0)):
        original = sf.read(folder / f"{name}.wav")[0]
        written = sf.read(tmp_path / "out" / f"{name}.wav")[0]
        measured = 20 * np.log10(np.sqrt(np.mean(written**2)) / np.sqrt(np.mean(original**2)))
        assert abs(measured - expected) < 0.05
        assert abs(rows[name]["level_change_db"] - measured) < 0.05, rows[name]


@pytest.mark.parametrize("method", ["identity", "mcadams"])
def test_outputs_keep_the_input_length_at_odd_rates(tmp_path, method):
    from synth_audio import voiced

    folder = tmp_path / "rates"
    folder.mkdir()
    lengths = {22050: 11027, 44100: 22051, 11025: 5513, 8000: 4001}  # odd lengths: 22050 -> 16 kHz -> back rounds twice
    for rate, n in lengths.items():
        sf.write(folder / f"r{rate}.wav", voiced(n / rate + 0.01, rate)[:n], rate, subtype="PCM_16")
    run_anonymize(config(folder, tmp_path / "out", method=method, score=False))
    for rate, n in lengths.items():
        info = sf.info(tmp_path / "out" / f"r{rate}.wav")
        assert (info.samplerate, info.frames) == (rate, n)
    run_anonymize(config(folder, tmp_path / "out16", method=method, score=False, output_sample_rate=16000))
    for rate, n in lengths.items():
        assert sf.info(tmp_path / "out16" / f"r{rate}.wav").frames == round(n * 16000 / rate)


def test_a_pseudonymized_folder_refuses_another_key(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out, pseudonymize=True, mapping=tmp_path / "a" / "map.csv"))
    for overwrite in (False, True):  # another key renames every file: the old ones would stay beside them
        with pytest.raises(AnoncliError, match="pseudonymized with another key"):
            run_anonymize(
                config(corpus, out, pseudonymize=True, mapping=tmp_path / "b" / "map.csv", overwrite=overwrite)
            )
    assert run_anonymize(config(corpus, out, pseudonymize=True, mapping=tmp_path / "a" / "map.csv")).skipped == 12
    assert len(list(out.rglob("*.wav"))) == 12


def test_dry_run_plan_counts(corpus, tmp_path):
    out = tmp_path / "out"
    run_anonymize(config(corpus, out, shard=(0, 2)))
    job = plan(config(corpus, out, shard=(1, 2)))
    assert len(job.todo) == 6 and job.skipped_done == 0
    job = plan(config(corpus, out, shard=(0, 2)))
    assert len(job.todo) == 0 and job.skipped_done == 6


def test_parallel_workers_give_the_same_manifest(corpus, tmp_path):
    one = run_anonymize(config(corpus, tmp_path / "one", batch_size=2))
    two = run_anonymize(config(corpus, tmp_path / "two", batch_size=2, jobs=2))
    assert one.ok == two.ok == 12
    for rel in ("spk_a/spk_a_0.wav", "spk_c/spk_c_3.wav"):
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


def test_mcadams_outputs_are_bitwise_reproducible_across_runs_shards_and_workers(corpus, tmp_path):
    base = run_anonymize(config(corpus, tmp_path / "a", method="mcadams", seed=3))
    assert base.ok == 12
    run_anonymize(config(corpus, tmp_path / "b", method="mcadams", seed=3, jobs=2, batch_size=3))
    for k in range(2):
        run_anonymize(config(corpus, tmp_path / "c", method="mcadams", seed=3, shard=(k, 2)))
    run_anonymize(config(corpus, tmp_path / "d", method="mcadams", seed=4))
    for rel in ("spk_a/spk_a_0.wav", "spk_b/spk_b_3.wav"):
        reference = (tmp_path / "a" / rel).read_bytes()
        assert (tmp_path / "b" / rel).read_bytes() == reference
        assert (tmp_path / "c" / rel).read_bytes() == reference
        assert (tmp_path / "d" / rel).read_bytes() != reference
    alphas = {r["utt_id"]: json.loads(r["params"])["alpha"] for r in read_manifest(tmp_path / "a").to_pylist()}
    assert len(set(alphas.values())) == 12 and all(0.5 <= a <= 0.9 for a in alphas.values())
