"""world_phone: the phone inventory, the frame replacement, the trainer's short run and the method round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synth_audio import voiced
from test_world_norm_training import make_corpus
from typer.testing import CliRunner

from anoncli import modelstore
from anoncli.cli.app import app
from anoncli.errors import AnoncliError
from anoncli.methods import MethodOptions, create_method
from anoncli.synthesis import world_features
from anoncli.synthesis.phone_inventory import (
    INPUT_DIM,
    PHONES,
    PhoneLabeller,
    classifier_input,
    fit_inventory,
    labels_at_frames,
    replace_frames,
    sharpen,
)

RATE = 16000
P = len(PHONES)
D = world_features.N_MCEP + 1


def labelled_frames(seed=0, speakers=4):
    """Per utterance (one per speaker): frames (T, D) whose value is phone + 10 * speaker, and their labels.
    Speaker 3 never says phone 5."""
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for s in range(speakers):
        y = rng.integers(0, 8, 400)
        if s == 3:
            y[y == 5] = 6
        x = (y + 10.0 * s)[:, None] + 0.01 * rng.standard_normal((400, D))
        frames.append(x)
        labels.append(y)
    return frames, labels


def test_inventory_shapes_and_shrinkage():
    frames, labels = labelled_frames()
    genders = np.array([0, 0, 1, 1])
    inv = fit_inventory(frames, labels, [0, 1, 2, 3], genders, prior_frames=20.0)
    assert inv.centroids.shape == (4, P, D) and inv.counts.shape == (4, P)
    assert inv.counts.sum() == 1600 and inv.counts[3, 5] == 0
    # a phone said ~50 times: close to the speaker's own mean of it (phone + 10 s), pulled a little to the prior
    n = inv.counts[1, 2]
    assert n > 30 and abs(inv.centroids[1, 2, 0] - 12.0) < 20.0 / (n + 20.0) * 1.5
    # a phone the speaker never said: its gender's realisation (speaker 2's, 25) moved by the speaker's offset
    offset = frames[3].mean() - np.concatenate(frames[2:]).mean()
    assert inv.centroids[3, 5, 0] == pytest.approx(25.0 + offset, abs=0.05)
    with pytest.raises(ValueError):
        fit_inventory(frames, labels[:3], [0, 1, 2, 3], genders)


def test_pool_draw_is_seeded_and_of_one_gender():
    frames, labels = labelled_frames(speakers=4)
    inv = fit_inventory(frames, labels, [0, 1, 2, 3], np.array([0, 1, 0, 1]))
    pools = {tuple(inv.draw_pool(seed, 1, 1)) for seed in range(40)}
    assert pools == {(1,), (3,)}  # male speakers only, both drawn
    assert np.array_equal(inv.draw_pool(7, 0, 2), inv.draw_pool(7, 0, 2))
    assert inv.draw_pool(7, 0, 5).tolist() == [0, 2]  # capped at the gender's speakers
    assert inv.pool_centroids(np.array([0, 2])).shape == (P, D)


def features_of(seconds=0.6, f0=150.0, formants=(700, 1200, 2600), seed=0):
    return world_features.analyse(voiced(seconds, RATE, f0, formants, seed=seed), RATE)


def test_replace_frames_takes_nothing_of_the_source_at_detail_zero():
    a = features_of(seed=1)
    b = features_of(f0=220.0, formants=(900, 1700, 3000), seed=2)
    t = min(len(a.mcep), len(b.mcep))
    a = a.with_(mcep=a.mcep[:t], bap=a.bap[:t], log_f0=a.log_f0[:t], voiced=a.voiced[:t], level_db=a.level_db[:t])
    b = b.with_(mcep=b.mcep[:t], bap=b.bap[:t], log_f0=b.log_f0[:t], voiced=b.voiced[:t], level_db=b.level_db[:t])
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(P), size=t)
    pool = rng.standard_normal((P, D))
    out_a, out_b = replace_frames(a, post, pool, 1.0, 0.0), replace_frames(b, post, pool, 1.0, 0.0)
    assert np.allclose(out_a.mcep, out_b.mcep) and np.allclose(out_a.bap, out_b.bap)
    assert np.array_equal(out_a.log_f0, a.log_f0)  # F0 is the source's
    # detail 1 with certain posteriors: the source's frames, each phone's mean moved to the pool's
    hard = np.eye(P)[np.arange(t) % 2]
    kept = replace_frames(a, hard, pool, 1.0, 1.0, prior_frames=0.0)
    assert np.allclose(kept.mcep[0::2].mean(axis=0), pool[0, :-1])
    assert np.allclose(np.diff(kept.mcep[0::2], axis=0), np.diff(a.mcep[0::2], axis=0))
    with pytest.raises(ValueError):
        replace_frames(a, post[:-1], pool)
    with pytest.raises(ValueError):
        replace_frames(a, post, pool, detail=1.5)
    assert np.allclose(sharpen(post, 50.0).argmax(axis=1), post.argmax(axis=1))


def test_labeller_and_classifier_input_cover_every_frame():
    wave = voiced(0.7, RATE, 140.0, seed=3)
    labels = PhoneLabeller().labels(wave)
    assert labels.shape == (70,) and labels.min() >= 0 and labels.max() < P
    features = world_features.analyse(wave, RATE)
    at = labels_at_frames(labels, len(features.mcep))
    assert at.shape == (len(features.mcep),) and at[1] == labels[0] and at[-1] == labels[-1]
    x = classifier_input(features)
    assert x.shape == (len(features.mcep), INPUT_DIM) and torch.isfinite(x).all()


def train(corpus, run, *extra):
    return CliRunner().invoke(
        app,
        ["train", "--method", "world_phone", str(corpus), "--out", str(run), "--no-progress", "--config", "quick"]
        + ["--epochs", "1", *extra],
    )


def test_trainer_short_run_and_method_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    corpus = make_corpus(tmp_path / "corpus", seconds=0.6)
    run = tmp_path / "run"
    result = train(corpus, run, "--param", "exclude_speakers=f2")
    assert result.exit_code == 0, result.output
    card = json.loads((run / "card.json").read_text())
    assert "f2" not in card["data"]["train_speakers"] and card["data"]["excluded_speakers"] == ["f2"]
    assert card["model"]["config"]["synthesis"] == "world_phone"
    state = modelstore.load_model(run / "checkpoints" / "best.pt")
    inventory = state["models"]["inventory"]
    assert tuple(inventory["centroids"].shape) == (5, P, D) and inventory["genders"].tolist() == [0, 0, 1, 1, 1]
    assert state["config"]["pool_speakers"] == ["f0", "f1", "m0", "m1", "m2"]
    assert 0.0 <= state["loop"]["best"] <= 100.0

    wave = torch.from_numpy(voiced(0.8, RATE, 180.0, (800, 1500, 2700), seed=9))
    outputs = []
    for checkpoint in (run, run / "model.safetensors"):
        method = create_method("world_phone", MethodOptions(checkpoint=str(checkpoint)))
        params = method.pipeline.utterance_params({}, 5)
        assert params["target"] in ("female", "male") and params["pseudo_seed"] == 5
        genders = {"f": "female", "m": "male"}
        assert params["pool"] and all(genders[s[0]] == params["target"] for s in params["pool"])
        outputs.append(method.process([wave], [params])[0].audio)
    again = method.process([wave], [method.pipeline.utterance_params({}, 5)])[0].audio
    assert outputs[0].shape == wave.shape and torch.equal(outputs[1], again)  # reproducible per seed
    assert torch.allclose(outputs[0], outputs[1], atol=1e-3)  # float16 centroids in both forms
    assert np.corrcoef(outputs[0].numpy(), wave.numpy())[0, 1] < 0.9
    other = method.process([wave], [method.pipeline.utterance_params({}, 6)])[0].audio
    assert not torch.equal(other, again)

    # a rerun of the finished run reads the cached frames and trains nothing new
    before = (run / "checkpoints" / "best.pt").read_bytes()
    assert train(corpus, run, "--param", "exclude_speakers=f2").exit_code == 0
    assert (run / "checkpoints" / "best.pt").read_bytes() == before

    with pytest.raises(AnoncliError, match="detail"):
        create_method("world_phone", MethodOptions(checkpoint=str(run), extra={"detail": "2"}))


def test_shipped_model_loads_by_default_and_names_its_data(tmp_path, monkeypatch):
    from anoncli.cli.env import shipped_data_licences

    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "empty-store"))
    assert modelstore.find("world_phone") == modelstore.shipped_model("world_phone")
    card = json.loads((modelstore.shipped_dir("world_phone") / "card.json").read_text())
    assert "CC BY 4.0" in card["data"]["licence"] and "CC BY 4.0" in shipped_data_licences()["world_phone"]
    assert "ls32" in card["data"]["excluded_speakers"] and "ls32" not in card["model"]["config"]["pool_speakers"]
    method = create_method("world_phone", MethodOptions())
    assert method.model_config["synthesis"] == "world_phone" and len(method.pipeline.inventory.genders) >= 100
    wave = torch.from_numpy(voiced(0.6, RATE, 120.0, seed=4))
    params = method.pipeline.utterance_params({}, 11)
    first = method.process([wave], [params])[0].audio
    assert torch.equal(first, method.process([wave], [params])[0].audio)
    assert np.corrcoef(first.numpy(), wave.numpy())[0, 1] < 0.9
