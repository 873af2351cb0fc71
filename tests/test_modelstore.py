"""The local model folder: register a run, find it by method, or by --checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from anoncli import modelstore
from anoncli.errors import AnoncliError
from anoncli.methods import MethodOptions, create_method


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    # an installation without shipped models (those are tested in test_shipped_models.py)
    monkeypatch.setattr(modelstore, "shipped_dir", lambda method: tmp_path / "no-shipped" / method)
    return tmp_path / "store"


def fake_run(root):
    (root / "checkpoints").mkdir(parents=True)
    torch.save({"method": "gengan", "epoch": 3}, root / "checkpoints" / "best.pt")
    torch.save({"method": "gengan", "epoch": 4}, root / "checkpoints" / "last.pt")
    (root / "model.json").write_text(json.dumps({"method": "gengan", "best_epoch": 3}))
    return root


def test_missing_model_message_says_how_to_train(store):
    with pytest.raises(AnoncliError) as info:
        modelstore.find("psegan")
    message = str(info.value)
    assert "\n" not in message
    assert "no trained psegan model" in message
    assert "anoncli train --method psegan" in message and "--checkpoint" in message


@pytest.mark.parametrize("method", ["gengan", "pcmelgan", "psegan"])
def test_anonymize_without_a_model_fails_with_the_message(store, method):
    with pytest.raises(AnoncliError, match=f"no trained {method} model"):
        create_method(method, MethodOptions())


def test_register_then_find(store, tmp_path):
    run = fake_run(tmp_path / "run")
    stored = modelstore.register("gengan", run)
    assert stored == store / "gengan" / "model.pt"
    assert modelstore.find("gengan") == stored
    assert torch.load(stored, weights_only=True)["epoch"] == 3  # the best, not the last
    card = json.loads((store / "gengan" / "model.json").read_text())
    assert card["best_epoch"] == 3 and card["registered_from"] == str(run.resolve())


def test_checkpoint_argument_wins_and_accepts_run_or_file(store, tmp_path):
    run = fake_run(tmp_path / "run")
    assert modelstore.find("gengan", run) == run / "checkpoints" / "best.pt"
    assert modelstore.find("gengan", run / "checkpoints" / "last.pt") == run / "checkpoints" / "last.pt"
    with pytest.raises(AnoncliError, match="no such file or folder"):
        modelstore.find("gengan", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnoncliError, match="no checkpoints/best.pt"):
        modelstore.find("gengan", tmp_path / "empty")


def test_wrong_method_checkpoint_is_refused(store, tmp_path):
    run = fake_run(tmp_path / "run")
    with pytest.raises(AnoncliError, match="a gengan checkpoint, not a psegan one"):
        create_method("psegan", MethodOptions(checkpoint=str(run)))
