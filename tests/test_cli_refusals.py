"""Command lines that must be refused (exit 2, one line, nothing created) or reported as they are."""

import inspect
import json

import pytest
from synth_audio import make_corpus
from test_cli import anoncli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("refusals") / "corpus", per_speaker=1, duration_s=0.3)


@pytest.mark.parametrize("files", [[], ["notes.txt", "sub/readme.txt"]])
def test_a_folder_without_audio_is_an_input_error_and_creates_nothing(tmp_path, files):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in files:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("text\n")
    result = anoncli("anonymize", folder, "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert f"{folder}: no audio files found (looked for: wav, flac" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_check_of_a_job_stopped_before_its_first_batch_says_incomplete(corpus, tmp_path):
    out = tmp_path / "out"
    assert anoncli("anonymize", corpus, "--out", out, "--method", "identity", "--no-score", "-q").returncode == 0
    for part in (out / "manifest").glob("*.parquet"):
        part.unlink()  # as if killed before the first batch was written (run.json kept)
    result = anoncli("inspect", out, "--check", "--format", "json")
    assert result.returncode == 3, result.stderr
    info = json.loads(result.stdout)
    assert info["ok"] == 0 and info["expected"] == 3 and info["complete"] is False
    assert "0 done of 3" in result.stderr
    assert not list(out.glob(".run*"))  # the record a first run starts with is gone once run.json is written
    (out / "run.json").unlink()  # nothing records the corpus: still incomplete, the count unknown
    result = anoncli("inspect", out, "--check")
    assert result.returncode == 3 and "0 done of an unknown number" in result.stderr, result.stderr


def test_check_of_a_first_run_killed_before_its_first_batch_counts_what_is_expected(corpus, tmp_path, monkeypatch):
    from anoncli.jobs import engine

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the job stops before any batch is written

    monkeypatch.setattr(engine, "_execute", killed)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        engine.run_anonymize(
            engine.AnonymizeConfig(corpus=corpus, out=out, method="identity", progress=False, score=False)
        )
    assert not (out / "run.json").exists() and not list((out / "manifest").glob("*.parquet"))
    result = anoncli("inspect", out, "--check")
    assert result.returncode == 3 and "0 done of 3 utterance(s)" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--checkpoint", "run/"],
            "--checkpoint: the mcadams method uses no trained model; did you mean --method gengan",
        ),
        (["--vocoder", "griffinlim"], "--vocoder: the mcadams method uses no vocoder; did you mean --method gengan"),
        (["--method", "identity", "--checkpoint", "x.pt"], "--checkpoint: the identity method uses no trained model"),
        (["--method", "gengan", "--alpha", "0.7"], "--alpha: the gengan method has no alpha setting"),
        (["--alpha", "1.0"], "--alpha 1.0: 1 leaves the voice unchanged"),
        (["--param", "alpha=1"], "1 leaves the voice unchanged"),
    ],
)
def test_options_the_method_would_ignore_are_refused(corpus, tmp_path, args, message):
    result = anoncli("anonymize", corpus, "--out", tmp_path / "out", "--no-score", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_applicability_follows_the_method_class_declarations():
    from anoncli.methods import method_class

    assert method_class("gengan").uses_checkpoint and method_class("gengan").uses_vocoder
    assert method_class("siamese").uses_checkpoint and not method_class("siamese").uses_vocoder
    assert not method_class("mcadams").uses_checkpoint and not method_class("identity").uses_vocoder


def test_quiet_silences_jsonl(corpus, tmp_path):
    loud = anoncli(
        "anonymize", corpus, "--out", tmp_path / "a", "--method", "identity", "--no-score", "--format", "jsonl"
    )
    assert loud.returncode == 0 and len(loud.stdout.splitlines()) == 3
    quiet = anoncli(
        "anonymize", corpus, "--out", tmp_path / "b", "--method", "identity", "--no-score", "--format", "jsonl", "-q"
    )
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stdout
    dry = anoncli("anonymize", corpus, "--out", tmp_path / "c", "--dry-run", "-q")
    assert dry.returncode == 0 and dry.stdout == "", dry.stdout


def test_check_help_says_the_identity_control_does_not_fail_it():
    from anoncli.cli.inspect import inspect as inspect_command

    text = inspect.signature(inspect_command).parameters["check"].annotation.__metadata__[0].help
    assert "passthrough_control_outputs" in text and "do not fail the check" in text


def test_the_engine_refuses_a_checkpoint_the_method_ignores(corpus, tmp_path):
    from anoncli.errors import AnoncliError
    from anoncli.jobs.engine import AnonymizeConfig, run_anonymize

    with pytest.raises(AnoncliError, match="--checkpoint: the identity method uses no trained model"):
        run_anonymize(
            AnonymizeConfig(
                corpus=corpus, out=tmp_path / "out", method="identity", checkpoint="run/", progress=False, score=False
            )
        )
    assert not (tmp_path / "out").exists()
