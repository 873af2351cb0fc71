"""The source-filter GAN trainer on a tiny synthetic corpus: one epoch, resume, shipped export, inference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from anoncli import modelstore
from anoncli.methods import MethodOptions, method_class
from anoncli.models.prosody import apply_prosody, utterance_stats, warp_logmel
from anoncli.synthesis import source_filter
from anoncli.training import TrainOptions, get_trainer

sys.path.insert(0, str(Path(__file__).parent))
from gan_helpers import make_corpus, voice  # noqa: E402

TINY = {
    "base": "sf-quick",
    "channels": [2, 4, 4, 4, 8],
    "epochs": 1,
    "steps_per_epoch": 2,
    "batch_size": 4,
    "segment_frames": 32,
    "d_width": 0.03,
    "d_warmup_steps": 1,
    "val_every": 1,
    "val_utterances": 4,
    "attacker_utterances": 8,
    "progress": False,
    "gated_width": 8,
    "gated_hidden": 4,
}


@pytest.mark.parametrize("method, attribute", [("gengan", "gender"), ("psegan", "emotion")])
def test_source_filter_training_exports_a_shippable_model(method, attribute, tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    corpus = make_corpus(tmp_path / "corpus")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "cache_dir": str(tmp_path / "cache")}))
    run = tmp_path / "run"
    options = TrainOptions(corpus=corpus, out=run, config=str(config), device="cpu", seed=1, register=True)
    summary = get_trainer(f"{method}-sf")(options)  # the source-filter variant of `method`
    assert Path(summary["registered"]).is_file()
    card = json.loads((run / "shipped" / "card.json").read_text())
    assert card["labels"]["attribute"] == attribute and card["model"]["config"]["synthesis"] == "source_filter"
    assert {"val_acc", "val_speaker_cos", "val_stoi"} <= set(card["validation"])
    options.epochs = 2  # resume continues after epoch 1
    get_trainer(f"{method}-sf")(options)
    assert [r["epoch"] for r in pq.read_table(run / "log.parquet").to_pylist()] == [1, 2]

    state = modelstore.load_shipped(run / "shipped" / "model.safetensors")
    anonymizer = method_class(method).from_state(state, MethodOptions(seed=2))
    wave = torch.from_numpy(voice(140.0, 1.3, seed=7, bright=0.7))
    out = anonymizer.process([wave], [{"noise_seed": 3, "target": anonymizer.classes[0]}])[0].audio
    assert out.shape == wave.shape and torch.isfinite(out).all()


def test_identity_prosody_and_warp_leave_the_voice_alone():
    wave = voice(150.0, 1.0, seed=1, bright=0.7)
    features = source_filter.analyse(wave, 16000)
    voiced = torch.from_numpy(features.f0 > 0)
    log_f0 = torch.from_numpy(np.log(np.maximum(features.f0, 1.0)).astype(np.float32))
    energy = torch.from_numpy(source_filter.frame_energy_db(features.envelope))
    new_log_f0, gain = apply_prosody(log_f0, voiced, energy, torch.zeros(4))
    assert torch.allclose(new_log_f0, log_f0) and torch.allclose(gain, torch.zeros_like(gain))
    stats = utterance_stats(log_f0, voiced, energy)
    assert abs(float(stats[3]) - np.log(150.0)) < 0.05  # median log-F0 of a 150 Hz voice
    env = source_filter.envelope_logmel(features.envelope, 16000)[None]
    centres = torch.linspace(1, 400, env.shape[1])
    assert torch.allclose(warp_logmel(env, torch.zeros(1), centres), env, atol=1e-5)
    out = source_filter.resynthesize(features)
    assert out.shape == (len(wave),) and float(out.abs().max()) > 0.05
