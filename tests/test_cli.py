"""The command line as a shell pipeline sees it: exit codes, one-line errors, data on stdout."""

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from synth_audio import make_corpus


def anoncli(*args):
    """Run the CLI in this process, as `main()` would from a shell (exit code, stdout, stderr)."""
    from anoncli.cli.app import main

    stdout, stderr = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["anoncli", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("cli") / "corpus", per_speaker=2, duration_s=0.3)


@pytest.mark.parametrize("command", ["anonymize", "inspect", "train", "evaluate", "export"])
def test_every_command_has_help_with_an_example(command):
    result = anoncli(command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout


def test_vocoder_help_names_every_registered_vocoder():
    from anoncli.synthesis import vocoder_names

    text = " ".join(anoncli("anonymize", "--help").stdout.split())
    assert all(name in text for name in vocoder_names()), text


def test_anonymize_then_inspect_json_on_stdout(corpus, tmp_path):
    out = tmp_path / "out"
    result = anoncli("anonymize", corpus, "--out", out, "--method", "identity", "--jobs", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "6 ok" in result.stderr
    info = json.loads(anoncli("inspect", out, "--format", "json").stdout)
    assert info["kind"] == "output" and info["ok"] == 6 and info["failed"] == 0
    corpus_info = json.loads(anoncli("inspect", corpus, "--format", "json").stdout)
    assert corpus_info["files"] == 6 and corpus_info["speakers"] == 3
    assert corpus_info["label_columns"]["gender"]["counts"] == {"female": 2, "male": 4}
    manifest = next((out / "manifest").glob("part-*.parquet"))
    assert json.loads(anoncli("inspect", manifest, "--format", "json").stdout)["rows"] == 6


def test_dry_run_writes_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    result = anoncli("anonymize", corpus, "--out", out, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["to_process"] == 6
    assert not out.exists()


def test_input_errors_exit_2_with_one_line(corpus, tmp_path):
    for args in (
        ["anonymize", tmp_path / "missing", "--out", tmp_path / "o"],
        ["anonymize", corpus, "--out", corpus / "inside"],
        ["anonymize", corpus, "--out", tmp_path / "o", "--method", "nonsense"],
        ["anonymize", corpus, "--out", tmp_path / "o", "--shard", "3/2"],
        ["anonymize", corpus, "--out", tmp_path / "o", "--param", "lpc_order=0"],  # misspelt or unknown
        ["anonymize", corpus, "--out", tmp_path / "o", "--param", "alpha=abc"],
        ["inspect", tmp_path / "missing"],
        # usage errors the command line itself finds: also one line, not a usage block
        ["anonymize", corpus],
        ["anonymize", corpus, "--out", tmp_path / "o", "--jobs", "0"],
        ["export", tmp_path / "o", tmp_path / "dest", "--to", "csv"],
        ["no-such-command"],
    ):
        result = anoncli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("anoncli: error:"), result.stderr
        assert "Traceback" not in result.stderr


def test_partial_failure_exits_3(corpus, tmp_path):
    broken = tmp_path / "with_broken"
    make_corpus(broken, per_speaker=1, duration_s=0.3)
    (broken / "spk_a" / "bad.wav").write_text("not audio")
    result = anoncli("anonymize", broken, "--out", tmp_path / "o", "--method", "identity")
    assert result.returncode == 3
    assert "bad.wav" in result.stderr
    check = anoncli("inspect", tmp_path / "o", "--check", "--format", "json")
    assert check.returncode == 3 and json.loads(check.stdout)["failed_utterances"] == 1


def test_check_reports_batches_a_killed_job_left_unmerged(corpus, tmp_path):
    from anoncli.manifest.reader import read_manifest
    from anoncli.manifest.writer import write_batch

    out = tmp_path / "o"
    assert anoncli("anonymize", corpus, "--out", out, "--method", "identity").returncode == 0
    assert anoncli("inspect", out, "--check").returncode == 0
    table = read_manifest(out)
    write_batch(out, (0, 1), table.slice(0, 1).to_pylist(), table.schema)  # what a killed rerun leaves
    check = anoncli("inspect", out, "--check")
    assert check.returncode == 3 and "1 batch file(s) not merged" in check.stderr
    (out / "run.json").unlink()  # a killed first run writes none: the part's stored configuration is used
    info = json.loads(anoncli("inspect", out, "--check", "--format", "json").stdout)
    assert info["corpus"] == str(corpus.resolve()) and info["missing"] == 0


def test_installed_entry_point_and_debug_traceback(tmp_path):
    """One real process: the module entry point works and ANONCLI_DEBUG=1 turns tracebacks on."""
    env = {**os.environ, "ANONCLI_DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "anoncli", "inspect", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_param_help_names_every_method_setting():
    import inspect

    from anoncli.cli.anonymize import anonymize
    from anoncli.methods import method_class, method_names

    help_text = inspect.signature(anonymize).parameters["param"].annotation.__metadata__[0].help
    for name in method_names():
        for key in method_class(name).param_names():
            assert (f"{name} " in help_text or f"{name}," in help_text) and key in help_text, (name, key)
