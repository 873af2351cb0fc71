"""The one training loop: resume to the same bits, early stop, time budget, typed configs, the checkpoint format."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.training import TrainOptions
from anoncli.training.loop import TrainConfig, Trainer, resolve_config


@dataclass
class ToyConfig(TrainConfig):
    width: int = 8
    lr: float = 1e-2
    channels: list[int] = field(default_factory=lambda: [2, 4])
    target: float = 1.0


class ToyTrainer(Trainer):
    """Two networks, two optimisers, randomness from python, numpy, torch and the data generator."""

    method = "toy"
    config_class = ToyConfig
    presets = {
        "quick": ToyConfig(epochs=4, steps_per_epoch=3, grad_clip=1.0, progress=False),
        "full": ToyConfig(epochs=50, width=32),
    }
    selection = ("val_loss", "min")

    def setup(self):
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, self.config.width), torch.nn.Dropout(0.2), torch.nn.Linear(self.config.width, 1)
        )
        self.critic = torch.nn.Linear(1, 1)
        self.opts = {
            "net": torch.optim.Adam(self.net.parameters(), lr=self.config.lr),
            "critic": torch.optim.SGD(self.critic.parameters(), lr=self.config.lr, momentum=0.9),
        }

    def modules(self):
        return {"net": self.net, "critic": self.critic}

    def optimizers(self):
        return self.opts

    def batches(self, epoch):
        while True:  # endless: steps_per_epoch ends the epoch
            x = torch.randn(8, 4, generator=self.rng) + random.random() + float(np.random.rand())
            yield x

    def train_step(self, x):
        out = self.net(x) + 0.01 * torch.randn(1)
        loss = (out - self.config.target).pow(2).mean() + self.critic(out.detach()).pow(2).mean() * 0
        self.optimize("net", loss)
        critic_loss = self.critic(out.detach()).pow(2).mean()
        self.optimize("critic", critic_loss)
        return {"loss": loss.item(), "critic": critic_loss.item()}

    def validate(self):
        random.random(), np.random.rand(), torch.rand(3)  # must not disturb training's random draws
        x = torch.ones(16, 4)
        return {"val_loss": float((self.net(x) - self.config.target).pow(2).mean())}

    def model_info(self):
        return {"config": {"width": self.config.width}, "classes": ["a", "b"], "attribute": "toy"}


def options(out: Path, **kw) -> TrainOptions:
    return TrainOptions(corpus=out.parent, out=out, device="cpu", seed=kw.pop("seed", 7), **kw)


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)
    return {f"{m}.{k}": v for m, sd in state["models"].items() for k, v in sd.items()}


def test_resumed_run_has_the_bits_of_an_uninterrupted_one(tmp_path):
    whole = ToyTrainer.train(options(tmp_path / "whole", epochs=4))
    assert whole["epochs"] == 4 and whole["steps"] == 12
    ToyTrainer.train(options(tmp_path / "split", epochs=2))  # "killed" after epoch 2
    resumed = ToyTrainer.train(options(tmp_path / "split", epochs=4))
    assert resumed["steps"] == 12
    a, b = (
        weights(tmp_path / "whole" / "checkpoints" / "last.pt"),
        weights(tmp_path / "split" / "checkpoints" / "last.pt"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = ToyTrainer.train(options(tmp_path / "seed", epochs=4, seed=8))
    assert other["steps"] == 12
    c = weights(tmp_path / "seed" / "checkpoints" / "last.pt")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters

    rows = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2, 3, 4]
    assert len([r for r in rows if r["kind"] == "step"]) == 12


def test_checkpoint_format_and_the_one_loader(tmp_path):
    ToyTrainer.train(options(tmp_path / "run", epochs=1))
    state = modelstore.load_model(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["format_version"] == modelstore.FORMAT_VERSION and state["method"] == "toy"
    assert state["trainer_config"]["width"] == 8 and state["config"] == {"width": 8}
    assert state["classes"] == ["a", "b"] and set(state["models"]) == {"net", "critic"}
    assert "data_fingerprint" in state
    # a format-1 checkpoint (one key per network, no format_version) is converted on load
    torch.save(
        {
            "generator": {"w": torch.ones(2)},
            "discriminator": {"w": torch.zeros(2)},
            "opt_g": {},
            "opt_d": {},
            "epoch": 3,
            "config": {"sample_rate": 16000},
        },
        tmp_path / "old.pt",
    )
    old = modelstore.load_model(tmp_path / "old.pt")
    assert old["method"] == "melgan" and set(old["models"]) == {"generator", "discriminator"}
    assert old["format_version"] == modelstore.FORMAT_VERSION and old["data_fingerprint"] is None
    assert torch.equal(old["generator"]["w"], torch.ones(2))  # the keys inference read are kept
    torch.save({"format_version": modelstore.FORMAT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(AnoncliError, match="newer than this anoncli reads"):
        modelstore.load_model(tmp_path / "new.pt")


def test_an_old_checkpoint_is_not_resumed(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": 1, "epoch": 1, "models": {}}, run / "checkpoints" / "last.pt")
    with pytest.raises(AnoncliError, match="cannot be resumed; start over with --overwrite"):
        ToyTrainer.train(options(run, epochs=2))


def test_patience_and_time_budget_stop_early_and_resume(tmp_path):
    stopped = ToyTrainer.train(options(tmp_path / "p", epochs=30, extra={"patience": "2", "lr": "0", "val_every": "1"}))
    assert stopped.get("stopped") == "patience" and stopped["epochs"] == 3  # epoch 1 best, 2 and 3 not
    budget = ToyTrainer.train(options(tmp_path / "t", epochs=3, max_minutes=1e-6))
    assert budget["stopped"] == "max_minutes" and budget["epochs"] == 1
    again = ToyTrainer.train(options(tmp_path / "t", epochs=3, max_minutes=0))
    assert again["epochs"] == 3 and "stopped" not in again


def test_a_budget_spent_in_the_last_epoch_is_a_finished_run(tmp_path, capsys):
    done = ToyTrainer.train(options(tmp_path / "t", epochs=1, max_minutes=1e-6, extra={"progress": "off"}))
    assert done["epochs"] == 1 and "stopped" not in done
    assert "max_minutes" not in capsys.readouterr().err


def test_typed_config_from_presets_files_and_params(tmp_path):
    config = resolve_config(
        ToyTrainer, options(tmp_path / "r", extra={"channels": "4,8,16", "amp": "off", "lr": "1e-4"})
    )
    assert config.channels == [4, 8, 16] and config.amp is False and config.lr == 1e-4 and config.seed == 7
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": "full", "width": 3, "_note": "ignored"}))
    config = resolve_config(ToyTrainer, options(tmp_path / "r", config=str(path), epochs=2))
    assert (config.width, config.epochs) == (3, 2)
    for extra, message in [
        ({"chanels": "4"}, "--param chanels: unknown setting"),
        ({"width": "wide"}, "--param width=wide: expected an integer"),
        ({"amp": "maybe"}, "--param amp=maybe: expected one of"),
    ]:
        with pytest.raises(AnoncliError, match=message) as info:
            resolve_config(ToyTrainer, options(tmp_path / "r", extra=extra))
        assert "\n" not in str(info.value)
    path.write_text(json.dumps({"base": "quick", "widht": 3}))
    with pytest.raises(AnoncliError, match="c.json: widht: unknown setting"):
        resolve_config(ToyTrainer, options(tmp_path / "r", config=str(path)))
    with pytest.raises(AnoncliError, match="neither a preset of toy"):
        resolve_config(ToyTrainer, options(tmp_path / "r", config="medium"))


def test_validation_every_n_steps_is_logged_and_can_pick_the_best(tmp_path):
    run = tmp_path / "run"
    summary = ToyTrainer.train(options(run, epochs=2, extra={"val_every_steps": "2", "val_every": "2"}))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "step" and "val_loss" in r] == [2, 4, 6]
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["loop"]["best_epoch"] == summary["best_epoch"] and best["step"] in (2, 4, 6)
    assert best["loop"]["best"] == min(r["val_loss"] for r in rows if "val_loss" in r)
