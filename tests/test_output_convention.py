"""One output convention: --format table|json (and -q) on every data-printing command, data on stdout,
--files-from and a streamed jsonl for pipelines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from synth_audio import make_corpus
from typer.testing import CliRunner

from anoncli.cli.app import app


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("conv") / "corpus", per_speaker=2, duration_s=0.3)


def run(*args, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def test_anonymize_json_summary_and_jsonl_stream(corpus, tmp_path):
    result = run(
        "anonymize",
        corpus,
        "--out",
        tmp_path / "a",
        "--method",
        "identity",
        "--jobs",
        "1",
        "--format",
        "jsonl",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 6 and {line["status"] for line in lines} == {"ok"}
    assert all(line["output_path"] and line["utt_id"] for line in lines)
    rerun = run("anonymize", corpus, "--out", tmp_path / "a", "--method", "identity", "--format", "json")
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == 6 and summary["ok"] == 0 and summary["exit_code"] == 0
    quiet = run("anonymize", corpus, "--out", tmp_path / "a", "--method", "identity", "--format", "json", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert quiet.stderr == ""  # no progress, no summary line: nothing to warn about


def test_files_from_selects_only_listed_files(corpus, tmp_path):
    listed = sorted(p for p in corpus.rglob("*.wav"))[:2]
    listing = "\n".join(str(p) for p in listed) + "\n"
    result = run(
        "anonymize",
        corpus,
        "--out",
        tmp_path / "b",
        "--method",
        "identity",
        "--files-from",
        "-",
        "--format",
        "jsonl",
        "--no-progress",
        input=listing,
    )
    assert result.exit_code == 0, result.output
    done = {json.loads(line)["source_path"] for line in result.stdout.splitlines()}
    assert done == {p.relative_to(corpus).as_posix() for p in listed}
    relative = tmp_path / "list.txt"
    relative.write_text(listed[0].relative_to(corpus).as_posix() + "\n")
    dry = run("anonymize", corpus, "--out", tmp_path / "c", "--files-from", relative, "--dry-run")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["to_process"] == 1


def test_inspect_check_of_a_files_from_run_expects_the_selected_files(corpus, tmp_path):
    listed = sorted(p for p in corpus.rglob("*.wav"))[:3]
    out = tmp_path / "sel"
    done = run(
        "anonymize",
        corpus,
        "--out",
        out,
        "--method",
        "identity",
        "--files-from",
        "-",
        "--no-progress",
        input="\n".join(str(p) for p in listed) + "\n",
    )
    assert done.exit_code == 0, done.output
    check = run("inspect", out, "--check", "--format", "json")
    assert check.exit_code == 0, check.output  # the 3 other files of the corpus were never asked for
    info = json.loads(check.stdout)
    assert info["complete"] and info["expected"] == 3 and info["missing"] == 0
    (out / "manifest" / "selection.txt").write_text((out / "manifest" / "selection.txt").read_text() + "not-done\n")
    short = run("inspect", out, "--check", "--format", "json")
    assert short.exit_code == 3 and json.loads(short.stdout)["missing_examples"] == ["not-done"]
    assert "1 missing of the 4 expected (selected by --files-from -" in short.stderr
    whole = run("anonymize", corpus, "--out", out, "--method", "identity", "--no-progress")  # the rest of the corpus
    assert whole.exit_code == 0, whole.output
    full = json.loads(run("inspect", out, "--check", "--format", "json").stdout)
    assert full["complete"] and full["expected"] == 6


def test_jsonl_reader_going_away_stops_the_job_resumably_with_exit_141(corpus, tmp_path):
    # `anoncli anonymize ... --format jsonl | head -1`: stop like a Unix filter, not "error: OUT: Broken pipe"
    out = tmp_path / "pipe"
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
        "--jobs",
        "1",
        "--batch-size",
        "1",
        "--format",
        "jsonl",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141, stderr
    assert json.loads(first)["status"] == "ok"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "standard output was closed" in lines[0] and "rerun" in lines[0], stderr
    rerun = run("anonymize", corpus, "--out", out, "--method", "identity", "--format", "json", "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] >= 1 and summary["skipped"] + summary["ok"] == 6


def test_inspect_check_finds_outputs_deleted_or_overwritten_after_the_run(corpus, tmp_path):
    out = tmp_path / "gone"
    assert run("anonymize", corpus, "--out", out, "--method", "identity", "--no-progress").exit_code == 0
    assert run("inspect", out, "--check").exit_code == 0
    outputs = sorted(out.rglob("*.wav"))
    outputs[0].unlink()
    outputs[1].write_text("not audio any more")
    check = run("inspect", out, "--check", "--format", "json")
    assert check.exit_code == 3
    info = json.loads(check.stdout)
    assert info["broken_outputs"] == 2 and not info["complete"]
    assert "2 output file(s) listed as done but missing or unreadable (rerun" in check.stderr


def test_evaluating_a_pseudonymized_run_says_why_it_cannot_be_paired(corpus, tmp_path):
    from anoncli.errors import InputError

    out = tmp_path / "ps"
    made = run(
        "anonymize",
        corpus,
        "--out",
        out,
        "--method",
        "identity",
        "--pseudonymize",
        "--mapping",
        tmp_path / "private" / "map.csv",
        "--no-progress",
    )
    assert made.exit_code == 0, made.output
    result = run("evaluate", corpus, out, "--out", tmp_path / "report", "--probes", "signal")
    assert isinstance(result.exception, InputError) and "pseudonymized run" in str(result.exception)
    assert "export --pseudonymize" in str(result.exception)


def test_an_empty_files_from_list_does_nothing(corpus, tmp_path):
    # `find corpus -newer stamp | anoncli anonymize corpus --files-from -` when nothing changed
    dry = run(
        "anonymize", corpus, "--out", tmp_path / "e", "--method", "identity", "--files-from", "-", "--dry-run", input=""
    )
    assert dry.exit_code == 0 and json.loads(dry.stdout)["to_process"] == 0
    done = run(
        "anonymize",
        corpus,
        "--out",
        tmp_path / "e",
        "--method",
        "identity",
        "--files-from",
        "-",
        "--no-progress",
        "--format",
        "json",
        input="\n\n",
    )
    assert done.exit_code == 0 and json.loads(done.stdout)["processed"] == 0
    assert not list((tmp_path / "e").rglob("*.wav"))


def test_a_failed_file_removed_from_the_corpus_no_longer_makes_the_folder_incomplete(tmp_path):
    import shutil

    source = make_corpus(tmp_path / "c", per_speaker=2, duration_s=0.3)
    broken = next(source.rglob("*.wav"))
    broken.write_bytes(b"not audio")  # fails: exit 3
    out = tmp_path / "out"
    assert run("anonymize", source, "--out", out, "--method", "identity", "--no-progress").exit_code == 3
    assert run("inspect", out, "--check").exit_code == 3
    broken.unlink()  # the user removes the bad input (and its labels row stays harmless)
    info = json.loads(run("inspect", out, "--check", "--format", "json").stdout)
    assert info["complete"] and info["failed_utterances"] == 0 and info["rows_not_in_corpus"] == 1
    shutil.rmtree(source)


def test_files_from_naming_a_file_outside_the_corpus_is_one_line_exit_2(corpus, tmp_path):
    stray = tmp_path / "elsewhere.wav"
    stray.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "anoncli", "anonymize", str(corpus), "--out", str(tmp_path / "d"), "--files-from", "-"],
        input=f"\n{stray}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 2" in lines[0] and str(stray) in lines[0]


def test_files_from_relative_entry_not_found_says_where_it_was_looked_for(corpus, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "anoncli", "anonymize", str(corpus), "--out", str(tmp_path / "e"), "--files-from", "-"],
        input="../elsewhere/x.wav\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 1" in lines[0] and f"current folder {tmp_path}" in lines[0]


def test_inspect_and_export_take_format_json_and_quiet(corpus, tmp_path):
    out = tmp_path / "e"
    assert run("anonymize", corpus, "--out", out, "--method", "identity", "--no-progress").exit_code == 0
    info = json.loads(run("inspect", out, "--format", "json").stdout)
    assert info["ok"] == 6
    assert run("inspect", out, "-q").stdout == ""
    exported = run("export", out, tmp_path / "k", "--to", "kaldi", "--format", "json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["utterances"] == 6
    bad = run("inspect", out, "--format", "yaml")
    assert bad.exit_code != 0 and "--format" in str(bad.exception)


def test_old_audio_format_spelling_still_works_with_a_warning(corpus, tmp_path):
    result = run(
        "anonymize", corpus, "--out", tmp_path / "f", "--method", "identity", "--format", "flac", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert "--audio-format flac" in result.stderr
    assert len(list((tmp_path / "f").rglob("*.flac"))) == 6


def test_evaluate_files_from_and_format_json(corpus, tmp_path):
    out = tmp_path / "g"
    assert run("anonymize", corpus, "--out", out, "--method", "identity", "--no-progress").exit_code == 0
    listing = tmp_path / "some.txt"
    listing.write_text("\n".join(str(p) for p in sorted(corpus.rglob("*.wav"))[:4]) + "\n")
    result = run(
        "evaluate",
        corpus,
        out,
        "--out",
        tmp_path / "report",
        "--probes",
        "signal",
        "--bootstrap",
        "0",
        "--files-from",
        listing,
        "--format",
        "json",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == json.loads((tmp_path / "report" / "summary.json").read_text())
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "report" / "scores.parquet")) == 4
