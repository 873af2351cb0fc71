"""`anoncli train` checks what it is given before it works: U-Nets of any level count the 80 mel bands
allow (and a one-line error for the others), a run that stopped before its first checkpoint does not pin
its config, splits whose training or validation speakers cover one class of the attribute refused with
a fix, the split's size on stderr, `--no-progress` / `-q`, and a rounded summary table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from anoncli import modelstore
from anoncli.cli.app import main
from anoncli.cli.train import _print_summary
from anoncli.methods import MethodOptions, method_class
from anoncli.training.common import speaker_split
from anoncli.training.gengan import GenGANTrainer

sys.path.insert(0, str(Path(__file__).parent))
from gan_helpers import make_corpus, tiny_config, voice  # noqa: E402
from synth_audio import make_corpus as make_synth_corpus  # noqa: E402

SF_TINY = {
    "base": "sf-quick",
    "channels": [2, 4, 4, 4, 8],
    "epochs": 1,
    "steps_per_epoch": 2,
    "batch_size": 4,
    "segment_frames": 32,
    "d_width": 0.03,
    "d_warmup_steps": 1,
    "val_every": 5,
    "val_utterances": 2,
    "attacker_utterances": 8,
    "progress": False,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("train-checks") / "corpus", per_speaker=3)


@pytest.fixture(scope="module")
def one_female(tmp_path_factory):
    """Two male speakers (spk_b, spk_c) and one female (spk_a), like examples/corpus: no split gives both
    sides both genders."""
    return make_synth_corpus(tmp_path_factory.mktemp("one-female") / "corpus")


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`anoncli train ARGS --device cpu` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["anoncli", "train", *map(str, args), "--device", "cpu"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def gan_args(method: str, corpus: Path, tmp_path: Path, **extra) -> list:
    if method.endswith("-sf"):
        config = tmp_path / "sf.json"
        config.write_text(json.dumps({**SF_TINY, "cache_dir": str(tmp_path / "sf-cache"), **extra}))
    else:
        if method == "psegan":
            extra = {"gated_width": 8, "gated_hidden": 4, **extra}
        config = tiny_config(tmp_path / "tiny.json", **extra)
    return ["--method", method, corpus, "--out", tmp_path / "run", "--format", "json", "--config", config]


@pytest.mark.parametrize(
    "method, channels",
    [("gengan", "4,8,16"), ("gengan", "4"), ("pcmelgan", "4,8,16"), ("psegan", "4,8"), ("gengan-sf", "4,8,16")],
)
def test_unets_of_fewer_levels_train_and_anonymize(method, channels, corpus, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch, capsys, *gan_args(method, corpus, tmp_path), "--param", f"channels={channels}", "--epochs", "1"
    )
    assert code == 0, err
    assert json.loads(out)["epochs"] == 1
    state = modelstore.load_model(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["config"]["channels"] == [int(c) for c in channels.split(",")]
    anonymizer = method_class(method.removesuffix("-sf")).from_state(state, MethodOptions(seed=1))
    wave = torch.from_numpy(voice(150.0, 0.7, seed=3, bright=0.7))
    result = anonymizer.process([wave], [{"noise_seed": 3, "target": anonymizer.classes[0]}])[0].audio
    assert result.shape == wave.shape and torch.isfinite(result).all()


@pytest.mark.parametrize(
    "param, message",
    [
        ("channels=2,2,2,2,2,2", "--param channels=2,2,2,2,2,2: expected 1 to 5 positive encoder widths"),
        ("channels=4,0", "--param channels=4,0: expected 1 to 5 positive encoder widths"),
        ("segment_frames=36", "--param segment_frames=36: expected a multiple of 16"),
    ],
)
def test_unusable_unet_settings_are_a_one_line_error_before_any_work(
    param, message, corpus, tmp_path, monkeypatch, capsys
):
    code, _, err = run_cli(monkeypatch, capsys, *gan_args("gengan", corpus, tmp_path), "--param", param)
    assert code == 2 and message in err and "\n" not in err.strip()
    assert not (tmp_path / "run").exists()


def test_a_run_that_stopped_before_its_first_checkpoint_does_not_pin_its_config(corpus, tmp_path, monkeypatch, capsys):
    original = GenGANTrainer.train_step

    def crashes(self, batch):
        raise RuntimeError("a bug in the first step")

    monkeypatch.setattr(GenGANTrainer, "train_step", crashes)
    code, _, _ = run_cli(monkeypatch, capsys, *gan_args("gengan", corpus, tmp_path), "--param", "channels=4,8,16")
    assert code == 1
    assert (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    monkeypatch.setattr(GenGANTrainer, "train_step", original)
    code, out, err = run_cli(monkeypatch, capsys, *gan_args("gengan", corpus, tmp_path), "--param", "channels=4,8")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["channels"] == [4, 8]
    # once checkpointed, a run keeps its config
    code, _, err = run_cli(monkeypatch, capsys, *gan_args("gengan", corpus, tmp_path), "--param", "channels=4")
    assert code == 2 and "different config (channels)" in err


@pytest.mark.parametrize("method", ["gengan", "pcmelgan", "gengan-sf", "siamese"])
def test_one_gender_among_the_training_speakers_is_refused_with_a_fix(method, corpus, tmp_path, monkeypatch, capsys):
    # s2 and s4 are the female speakers: validating on them leaves male training speakers only
    if method == "siamese":
        args = ["--method", "siamese", corpus, "--out", tmp_path / "run", "--utility", "gender"]
    else:
        args = gan_args(method, corpus, tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--param", "val_speakers=s2,s4")
    assert code == 2 and "\n" not in err.strip(), err
    assert (
        "the training speakers cover only one gender class (male; speakers by class: female: s2, s4; "
        "male: s1, s3)" in err
    )
    assert "--param val_speakers=" in err
    assert not (tmp_path / "run").exists()


def test_one_gender_among_the_validation_speakers_is_refused(corpus, one_female, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, *gan_args("gengan", corpus, tmp_path), "--param", "val_speakers=s1")
    assert code == 2 and "the validation speakers cover only one gender class (male;" in err
    # two male speakers and one female: training and validation cannot both see both genders
    code, _, err = run_cli(monkeypatch, capsys, *gan_args("gengan", one_female, tmp_path))
    assert code == 2 and "speakers cover only one gender class" in err
    assert "use a corpus with at least 2 speakers of each gender class" in err


def test_the_drawn_split_gives_both_sides_every_gender_the_corpus_allows(corpus, one_female):
    from anoncli.corpus import open_corpus

    for seed in range(4):
        train, val, _ = speaker_split(
            open_corpus(corpus).utterances, val_fraction=0.2, seed=seed, stratify_label="gender"
        )
        assert {u.labels["gender"] for u in train} == {u.labels["gender"] for u in val} == {"female", "male"}
        # the only female speaker stays in training
        train, val, chosen = speaker_split(
            open_corpus(one_female).utterances, val_fraction=0.5, seed=seed, stratify_label="gender"
        )
        assert "spk_a" not in chosen and len(chosen) == 1


def test_split_size_on_stderr_and_no_progress(corpus, tmp_path, monkeypatch, capsys):
    args = [
        "--method",
        "gengan",
        corpus,
        "--out",
        tmp_path / "run",
        "--format",
        "json",
        "--config",
        tiny_config(tmp_path / "tiny.json", progress=True),
        "--epochs",
        "1",
    ]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "gengan: training on 2 speakers (6 utterances), validating on 2 speakers (6 utterances)" in err
    assert "gengan epoch 1/1:" in err
    for flag in ("--no-progress", "-q"):
        code, out, err = run_cli(monkeypatch, capsys, *args, "--out", tmp_path / flag, flag)
        assert code == 0, err
        assert "training on" not in err and "epoch 1/1" not in err
        assert (out == "") == (flag == "-q")


def test_the_summary_table_rounds_and_json_keeps_full_precision(capsys):
    _print_summary({"val_privacy": 99.57177879405208, "best_metrics": {"val_l1": 0.123456789}, "epochs": 3})
    table = capsys.readouterr().out
    assert "99.57" in table and "99.5717" not in table and "0.1235" in table and "0.123456" not in table
    assert "3" in table
