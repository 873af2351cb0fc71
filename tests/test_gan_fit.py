"""The GAN family and the MelGAN vocoder on the shared fit loop: one short `anoncli train` run each, typed
`--param` values, one-line errors, and a run killed in the middle of an epoch resumed to the same final
weights as an uninterrupted run with the same seed (mel-domain GAN, source-filter GAN, MelGAN)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from anoncli import modelstore
from anoncli.cli.app import app, main
from anoncli.methods import MethodOptions, method_class
from anoncli.training import TrainOptions
from anoncli.training.gengan import GenGANSourceFilterTrainer, GenGANTrainer
from anoncli.training.loop import resolve_config
from anoncli.training.melgan import MelGANVocoderTrainer

sys.path.insert(0, str(Path(__file__).parent))
from gan_helpers import make_corpus, tiny_config, voice  # noqa: E402

MELGAN_TINY = [
    "segment=1024",
    "batch_size=2",
    "steps_per_epoch=2",
    "ngf=4",
    "n_residual_layers=1",
    "ndf=4",
    "d_layers=2",
    "d_max_channels=16",
    "val_files=1",
    "val_fraction=0.34",
]
SF_TINY = {
    "base": "sf-quick",
    "channels": [2, 4, 4, 4, 8],
    "epochs": 2,
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


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the loop catches it, so nothing is saved on the way out."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("gan-fit") / "corpus")


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))


def train(*args) -> dict:
    result = CliRunner().invoke(app, ["train", *map(str, args), "--device", "cpu", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def args_for(method: str, corpus: Path, tmp_path: Path) -> list:
    if method == "melgan":
        return ["--method", "melgan", corpus, "--seed", "1", *[a for p in MELGAN_TINY for a in ("--param", p)]]
    if method.endswith("-sf"):
        config = tmp_path / "sf.json"
        config.write_text(json.dumps({**SF_TINY, "cache_dir": str(tmp_path / "sf-cache")}))
        return ["--method", method, corpus, "--config", config, "--seed", "1"]
    extra = {"gated_width": 8, "gated_hidden": 4} if method == "psegan" else {}
    return ["--method", method, corpus, "--config", tiny_config(tmp_path / "tiny.json", **extra), "--seed", "1"]


@pytest.mark.parametrize("method", ["pcmelgan", "gengan", "psegan", "melgan", "pcmelgan-sf"])
def test_one_short_epoch_through_the_cli(method, corpus, tmp_path):
    run = tmp_path / "run"
    summary = train(*args_for(method, corpus, tmp_path), "--out", run, "--epochs", "1")
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1 and summary["steps"] >= 1
    state = modelstore.load_model(run / "checkpoints" / "last.pt")
    model_method = method.removesuffix("-sf")
    assert state["format_version"] == modelstore.FORMAT_VERSION and state["method"] == model_method
    assert state["trainer_config"]["epochs"] == 1 and state["trainer_config"]["seed"] == 1
    assert len(state["data_fingerprint"]) == 16 and "generator" in state["models"] and state["config"]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1]
    assert sum(r["kind"] == "step" for r in rows) == summary["steps"]
    card = json.loads((run / "model.json").read_text())
    assert card["method"] == model_method and card["data_fingerprint"] == state["data_fingerprint"]
    if method.endswith("-sf"):  # the shipped form and the checkpoint both anonymize, with the same bits
        shipped = modelstore.load_model(run / "shipped" / "model.safetensors")
        assert set(shipped["models"]) == set(state["inference_modules"]) == {"filter", "generator", "prosody"}
        wave = torch.from_numpy(voice(140.0, 1.0, seed=7, bright=0.7))
        outs = []
        for loaded in (shipped, modelstore.load_model(run / "checkpoints" / "best.pt")):
            anonymizer = method_class(model_method).from_state(loaded, MethodOptions(seed=2))
            outs.append(anonymizer.process([wave], [{"noise_seed": 3, "target": anonymizer.classes[0]}])[0].audio)
        assert outs[0].shape == wave.shape and torch.isfinite(outs[0]).all() and torch.equal(outs[0], outs[1])


def test_typed_params_reach_the_trained_model(corpus, tmp_path):
    run = tmp_path / "run"
    train(
        *args_for("gengan", corpus, tmp_path),
        "--out",
        run,
        "--epochs",
        "1",
        "--param",
        "channels=2,4,4,4,8",
        "--param",
        "amp=off",
        "--param",
        "lr_g=2e-3",
    )
    state = modelstore.load_model(run / "checkpoints" / "best.pt")
    assert state["config"]["channels"] == [2, 4, 4, 4, 8]  # ints, not strings
    assert state["trainer_config"]["amp"] is False and state["trainer_config"]["lr_g"] == 2e-3
    config = resolve_config(GenGANTrainer, TrainOptions(corpus=corpus, out=run, extra={"channels": "4,8,16"}))
    assert config.channels == [4, 8, 16] and config.attribute is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--param", "chanels=4,8"], "--param chanels: unknown setting (known: "),
        (["--param", "channels=4,x"], "--param channels=4,x: expected a comma list of integers"),
        (["--param", "amp=maybe"], "--param amp=maybe: expected one of"),
        (["--config", "sf-quick"], "for the other domain's presets use --method gengan-sf"),
    ],
)
def test_a_wrong_key_or_type_is_a_one_line_error(args, message, corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "anoncli",
            "train",
            "--method",
            "gengan",
            str(corpus),
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            *args,
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return {f"{m}.{k}": v for m, sd in state["models"].items() for k, v in sd.items()}


@pytest.mark.parametrize(
    "method, trainer_class",
    [("gengan", GenGANTrainer), ("gengan-sf", GenGANSourceFilterTrainer), ("melgan", MelGANVocoderTrainer)],
)
def test_killed_mid_epoch_and_resumed_ends_with_the_same_weights(method, trainer_class, corpus, tmp_path, monkeypatch):
    args = args_for(method, corpus, tmp_path) + ["--epochs", "2"]
    whole = train(*args, "--out", tmp_path / "whole")
    assert whole["epochs"] == 2

    original = trainer_class.train_step
    seen = {"steps": 0}

    def dies_in_epoch_2(self, batch):
        if self.epoch == 2:
            seen["steps"] += 1
            if seen["steps"] == 2:  # one step of epoch 2 taken and not checkpointed
                raise Killed
        return original(self, batch)

    monkeypatch.setattr(trainer_class, "train_step", dies_in_epoch_2)
    with pytest.raises(Killed):
        CliRunner().invoke(
            app,
            ["train", *map(str, args), "--out", str(tmp_path / "cut"), "--device", "cpu", "--quiet"],
            catch_exceptions=False,
        )
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(trainer_class, "train_step", original)
    resumed = train(*args, "--out", tmp_path / "cut")
    assert resumed["epochs"] == 2 and resumed["steps"] == whole["steps"]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
