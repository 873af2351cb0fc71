"""`anoncli train --method melgan` on tiny synthetic data: runs, logs, checkpoints, resumes, registers."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from anoncli.synthesis.melgan import load_melgan
from anoncli.training import TrainOptions, get_trainer

TINY = {
    "segment": "1024",
    "batch_size": "2",
    "steps_per_epoch": "2",
    "ngf": "4",
    "n_residual_layers": "1",
    "ndf": "4",
    "d_layers": "2",
    "d_max_channels": "16",
    "val_files": "1",
    "val_fraction": "0.34",
}


def make_corpus(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["file_name,speaker"]
    for s, speaker in enumerate(["a", "b", "c"]):
        for i in range(2):
            t = np.arange(12000) / 16000
            wave = sum(np.sin(2 * np.pi * k * (110 + 40 * s) * t) / k for k in range(1, 8)) * 0.1
            wave = wave + 0.01 * rng.standard_normal(len(t))
            sf.write(root / f"{speaker}{i}.wav", wave.astype(np.float32), 16000)
            rows.append(f"{speaker}{i}.wav,{speaker}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def options(corpus, out, epochs):
    return TrainOptions(corpus=corpus, out=out, epochs=epochs, device="cpu", seed=1, extra=dict(TINY), register=True)


def test_train_two_steps_then_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "models"))
    corpus = make_corpus(tmp_path / "corpus")
    train = get_trainer("melgan")

    first = train(options(corpus, tmp_path / "run", epochs=1))
    assert first["steps"] == 2
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["step"] == 2

    # Second call with more epochs continues from the checkpoint instead of starting over.
    second = train(options(corpus, tmp_path / "run", epochs=2))
    assert second["steps"] == 4
    log = pq.read_table(tmp_path / "run" / "log.parquet").to_pandas()
    assert log["epoch"].tolist() == [1, 2]
    assert {"loss_d", "loss_adv", "loss_fm", "loss_mel", "val_stoi"} <= set(log.columns)
    assert np.isfinite(log["loss_d"]).all()

    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["method"] == "melgan" and card["sample_rate"] == 16000
    assert set(card["data"]["val_speakers"]).isdisjoint(card["data"]["train_speakers"])

    generator, rate = load_melgan(tmp_path / "run" / "generator.pt", sample_rate=16000)
    assert generator.ngf == 4 and rate == 16000
    generator, rate = load_melgan(tmp_path / "run")
    assert rate == 16000
    assert (tmp_path / "models" / "melgan" / "model.pt").is_file()

    # The registered model is what `--vocoder melgan` uses when no checkpoint is given.
    from anoncli.synthesis import create_vocoder

    vocoder = create_vocoder("melgan", 16000)
    wave = torch.randn(3000) * 0.1
    out = vocoder.synthesize(vocoder.mel(wave[None])[0], wave)
    assert out.shape == wave.shape and torch.isfinite(out).all()


def test_corpus_without_speakers_is_a_user_error_and_leaves_no_run(tmp_path):
    from anoncli.errors import AnoncliError

    (tmp_path / "c").mkdir()
    sf.write(tmp_path / "c" / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(AnoncliError, match="speaker"):
        get_trainer("melgan")(options(tmp_path / "c", tmp_path / "run", epochs=1))
    assert not (tmp_path / "run").exists()


def test_bad_segment_is_refused(tmp_path):
    from anoncli.errors import AnoncliError

    corpus = make_corpus(tmp_path / "corpus")
    bad = options(corpus, tmp_path / "run", epochs=1)
    bad.extra["segment"] = "1000"
    with pytest.raises(AnoncliError, match="segment"):
        get_trainer("melgan")(bad)
