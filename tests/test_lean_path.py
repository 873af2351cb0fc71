"""The lean CPU path, typed method outputs, method options and the manifest row dataclass."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from anoncli.manifest.schema import SCORE_COLUMNS, STATUS_OK, ManifestRow, manifest_schema
from anoncli.methods import MethodOptions, MethodOutput, create_method
from anoncli.methods.mcadams import McAdamsOptions, compiled_kernel_available

needs_numba = pytest.mark.skipif(not compiled_kernel_available(), reason="the compiled kernel needs numba")


def _corpus(root: Path, files: int = 6) -> Path:
    rng = np.random.default_rng(0)
    rows = ["file_name,speaker,gender"]
    for i in range(files):
        rate = (8000, 16000, 22050)[i % 3]
        t = np.arange(int((0.3 + 0.1 * i) * rate)) / rate
        wave = 0.2 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.01 * rng.standard_normal(t.size)
        name = f"s{i % 2}/u{i}.wav"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / name), wave.astype(np.float32), rate, subtype="PCM_16")
        rows.append(f"{name},s{i % 2},{'f' if i % 2 else 'm'}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@needs_numba
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_cpu_mcadams_run_imports_no_torch(tmp_path, jobs):
    corpus = _corpus(tmp_path / "corpus")
    script = textwrap.dedent(f"""
        import json, sys
        from anoncli.cli.app import main
        sys.argv = ["anoncli", "anonymize", {str(corpus)!r}, "--out", {str(tmp_path / "out")!r}, "--no-score",
                    "--no-progress", "--jobs", {jobs!r}, "--device", "auto"]
        try:
            main()
        except SystemExit as done:
            code = done.code
        heavy = ("pandas", "pyarrow.dataset", "pyarrow.compute")
        print(json.dumps({{"code": code, "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
                          "heavy": sorted(m for m in heavy if m in sys.modules)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), result.stderr
    assert report["torch"] == [], "the CPU McAdams path imported torch"
    assert report["heavy"] == [], "writing and reading the manifest imported pandas or pyarrow's dataset/compute layers"
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 6


@needs_numba
def test_typed_outputs_keep_the_input_type():
    method = create_method("mcadams", MethodOptions(extra={"backend": "compiled", "alpha": "0.8"}))
    assert not method.tensor_inputs
    wave = (np.random.default_rng(1).standard_normal(4000) * 0.1).astype(np.float32)
    (out,) = method.process([wave], [method.utterance_params(_utt("a"))])
    assert isinstance(out, MethodOutput) and out.features is None
    assert isinstance(out.audio, np.ndarray) and out.audio.dtype == np.float32 and out.audio.shape == wave.shape
    torch = pytest.importorskip("torch")
    (again,) = method.process([torch.from_numpy(wave)], [method.utterance_params(_utt("a"))])
    assert isinstance(again.audio, torch.Tensor) and np.array_equal(again.audio.numpy(), out.audio)
    identity = create_method("identity", MethodOptions())
    (copy,) = identity.process([wave], [{}])
    assert isinstance(copy.audio, np.ndarray) and np.array_equal(copy.audio, wave) and copy.audio is not wave


def test_method_output_needs_something():
    with pytest.raises(ValueError):
        MethodOutput()
    both = MethodOutput(audio=np.zeros(3), features=np.ones(2))
    assert both.audio.shape == (3,) and both.features.shape == (2,)


def test_worker_wraps_bare_outputs_of_older_methods():
    from anoncli.jobs.worker import typed_output

    audio_method = create_method("identity", MethodOptions())
    assert typed_output(audio_method, np.zeros(3)).audio.shape == (3,)
    mixed = typed_output(audio_method, {"audio": np.zeros(3), "features": np.ones(4)})
    assert mixed.audio.shape == (3,) and mixed.features.shape == (4,)


def test_mcadams_options_come_from_params():
    assert MethodOptions().__dataclass_fields__.keys().isdisjoint({"alpha"})
    method = create_method("mcadams", MethodOptions(extra={"alpha": "0.66", "highpass": "off", "backend": "torch"}))
    assert method.settings == McAdamsOptions(alpha=0.66, backend="torch", highpass=False)
    assert method.utterance_params(_utt("x")) == {"alpha": 0.66, "highpass": False}
    from anoncli.errors import AnoncliError

    with pytest.raises(AnoncliError, match="alpha"):
        create_method("mcadams", MethodOptions(extra={"alpha": "loud"}))


def test_cli_alpha_is_the_mcadams_option(tmp_path):
    from anoncli.cli.anonymize import _method_params
    from anoncli.errors import AnoncliError

    assert _method_params(["highpass=0"], 0.7) == {"highpass": "0", "alpha": "0.7"}
    with pytest.raises(AnoncliError, match="alpha"):
        _method_params(["alpha=0.6"], 0.7)


def test_manifest_row_round_trip():
    row = ManifestRow(
        "u1",
        source_path="/c/u1.wav",
        output_path="u1.wav",
        speaker="s1",
        labels={"gender": "f", "emotion": None},
        duration_s=1.5,
        sample_rate=22050,
        output_sample_rate=22050,
        method="mcadams",
        params="{}",
        seed=7,
        status=STATUS_OK,
        elapsed_s=0.01,
        anoncli_version="x",
        scores={"stoi": 0.9, "score_notes": "f0_r: silent"},
    )
    record = row.to_record()
    assert list(record)[:7] == ["utt_id", "source_path", "output_path", "features_path", "speaker", "gender", "emotion"]
    assert ManifestRow.from_record(record) == row
    schema = manifest_schema(["speaker", "gender", "emotion"])
    table = pa.Table.from_pylist([record], schema=schema)
    back = ManifestRow.from_record(table.to_pylist()[0])
    assert back.labels == row.labels and back.utt_id == "u1" and back.seed == 7 and back.sample_rate == 22050
    assert back.scores == {**dict.fromkeys(SCORE_COLUMNS), "stoi": 0.9, "score_notes": "f0_r: silent"}
    # one definition: every run column of the schema is a row field or a score column, in order
    assert [f.name for f in schema if f.name not in ("gender", "emotion")] == ManifestRow.run_columns()
    row.update({"link_cosine": 0.5, "note": "n", "extra_label": "e"})
    row["f0_r"] = 0.7
    assert row.scores["link_cosine"] == 0.5 and row.note == "n" and row.labels["extra_label"] == "e"
    assert row.scores["f0_r"] == 0.7
    failed = ManifestRow("u2").fail("broken", 0.5)
    assert (failed.status, failed.error, failed.elapsed_s) == ("failed", "broken", 0.5)


@needs_numba
def test_ordered_sum_is_torchs_sum():
    torch = pytest.importorskip("torch")
    from anoncli.dsp.mcadams_kernel import ordered_sum

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(3)
        for n in [*range(0, 70), 255, 256, 257, 528, 1000, 4097, 16001, 70001, 400_003]:
            x = rng.standard_normal(n) * 0.3 - 0.01
            assert ordered_sum(x) == torch.from_numpy(x).sum().item(), n
    finally:
        torch.set_num_threads(threads)


def test_numpy_window_matches_torch():
    torch = pytest.importorskip("torch")
    from anoncli.dsp.framing import sqrt_hann_window, sqrt_hann_window_array

    for win_len, shift in ((320, 160), (400, 100), (512, 256)):
        hann = torch.hann_window(win_len, periodic=True, dtype=torch.float64)
        expected = torch.sqrt(hann / (hann.sum() / shift)).numpy()
        assert np.allclose(sqrt_hann_window_array(win_len, shift), expected, rtol=0, atol=1e-15)
        assert np.array_equal(sqrt_hann_window(win_len, shift).numpy(), sqrt_hann_window_array(win_len, shift))


def _utt(utt_id: str):
    from anoncli.corpus.utterance import Utterance

    return Utterance(utt_id, Path(f"/corpus/{utt_id}.wav"), f"{utt_id}.wav", {"speaker": None})


def test_batches_are_sized_from_the_total_duration(tmp_path):
    from anoncli.corpus import open_corpus
    from anoncli.jobs.batching import auto_plan, durations, estimate_total_seconds

    corpus = open_corpus(_corpus(tmp_path / "corpus", files=9))
    estimate = estimate_total_seconds(corpus.utterances)
    assert estimate == pytest.approx(sum(durations(corpus.utterances)), rel=0.05)
    assert auto_plan(9, 5.0, 2) == (1, 9)  # seconds of audio: one process, one batch
    workers, size = auto_plan(3000, 1312.0, 2)
    assert workers == 2 and 3000 / size >= 8  # several batches per worker
    assert auto_plan(3000, 1312.0, 1)[0] == 1 and 1312.0 / (3000 / auto_plan(3000, 1312.0, 1)[1]) <= 61


def test_records_table_keeps_values_and_types():
    from anoncli.manifest.writer import records_table

    schema = manifest_schema(["gender"], {"method": "x"})
    rows = [
        ManifestRow(
            utt_id=f'u{i}\n"é',
            status=STATUS_OK,
            duration_s=1 / (i + 3),
            sample_rate=16000,
            seed=2**40 + i,
            elapsed_s=np.float64(0.1) * i,
            labels={"gender": "f"},
            scores={
                "stoi": float("nan") if i == 0 else 1 / (i + 7),
                "f0_r": np.float32(0.5) if i else None,
                "link_cosine": float("-inf") if i == 1 else None,
            },
        ).to_record()
        for i in range(5)
    ]
    rows[2]["not_a_column"] = 1
    table = records_table(rows, schema)
    assert table.schema.equals(schema.remove_metadata())
    back = table.to_pylist()
    assert np.isnan(back[0]["stoi"]) and back[1]["link_cosine"] == float("-inf")
    for row, got in zip(rows, back):
        for key in got:
            same = isinstance(row.get(key), float) and np.isnan(row[key]) and np.isnan(got[key])
            assert same or got[key] == row.get(key), key
    assert "not_a_column" not in table.column_names
    assert records_table([], schema).num_rows == 0
    with pytest.raises(TypeError, match="object"):
        records_table([{"utt_id": "a", "status": "ok", "note": object()}], schema)


def test_part_merger_streams_rows_and_keeps_earlier_ones(tmp_path):
    from anoncli.manifest.layout import pending_files
    from anoncli.manifest.reader import read_manifest
    from anoncli.manifest.writer import PartMerger, finalize_part, write_batch

    schema = manifest_schema(["gender"])
    shard = (0, 1)

    def rows(*ids):
        return [ManifestRow(u, labels={"gender": "f"}, status=STATUS_OK).to_record() for u in ids]

    write_batch(tmp_path, shard, rows("a", "b"), schema)
    finalize_part(tmp_path, shard, schema)  # an earlier run's part
    write_batch(tmp_path, shard, rows("c"), schema)  # a batch a killed run left pending
    with PartMerger(tmp_path, shard, schema).open() as merger:
        done = write_batch(tmp_path, shard, rows("d", "e"), schema)
        merger.add(rows("d", "e"), done)
        merger.add(rows("a"))  # a copy of a merged row: the first one stays
        assert read_manifest(tmp_path).num_rows == 5  # the old part is in place until the merge closes
    table = read_manifest(tmp_path)
    assert sorted(table.column("utt_id").to_pylist()) == ["a", "b", "c", "d", "e"]
    assert pending_files(tmp_path) == []
    # a failing job leaves the part and the pending batches as they were
    write_batch(tmp_path, shard, rows("f"), schema)
    with pytest.raises(RuntimeError):
        with PartMerger(tmp_path, shard, schema).open() as merger:
            merger.add(rows("g"))
            raise RuntimeError("job died")
    assert len(pending_files(tmp_path)) == 1 and not [p for p in tmp_path.rglob("*") if "anoncli-tmp" in p.name]
    assert sorted(read_manifest(tmp_path).column("utt_id").to_pylist()) == ["a", "b", "c", "d", "e", "f"]


def test_scorer_columns_are_manifest_score_columns():
    quick_scores = pytest.importorskip("anoncli.scoring.quick_scores")
    assert set(quick_scores.SCORE_COLUMNS) | {quick_scores.NOTES_COLUMN} <= set(SCORE_COLUMNS)
