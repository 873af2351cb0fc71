"""One-epoch training of each GAN on a tiny synthetic corpus, resume, and anonymization with the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from anoncli.corpus import open_corpus
from anoncli.corpus.reading import read_utterance_audio
from anoncli.errors import AnoncliError
from anoncli.methods import MethodOptions, create_method
from anoncli.training import TrainOptions, get_trainer

sys.path.insert(0, str(Path(__file__).parent))
from gan_helpers import make_corpus, tiny_config  # noqa: E402

EXTRA = {"gengan": {}, "pcmelgan": {}, "psegan": {"gated_width": 8, "gated_hidden": 4}}
ATTRIBUTE = {"gengan": "gender", "pcmelgan": "gender", "psegan": "emotion"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("gan") / "corpus")


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    return tmp_path / "store"


@pytest.mark.parametrize("method", ["gengan", "pcmelgan", "psegan"])
def test_train_one_epoch_resume_and_anonymize(method, corpus, store, tmp_path):
    config = tiny_config(tmp_path / "tiny.json", **EXTRA[method])
    run = tmp_path / "run"
    options = TrainOptions(corpus=corpus, out=run, config=str(config), device="cpu", seed=3, register=True)
    summary = get_trainer(method)(options)

    card = json.loads((run / "model.json").read_text())
    assert card["method"] == method
    assert card["labels"]["attribute"] == ATTRIBUTE[method]
    assert set(card["data"]["train_speakers"]).isdisjoint(card["data"]["val_speakers"])
    assert "val_attacker_acc" in card["validation"]
    log = pq.read_table(run / "log.parquet").to_pylist()
    assert [row["epoch"] for row in log] == [1]
    assert summary["registered"] and Path(summary["registered"]).is_file()
    assert (store / method / "model.pt").is_file()

    # resume: asking for 2 epochs continues after epoch 1 instead of starting over
    options.epochs = 2
    get_trainer(method)(options)
    log = pq.read_table(run / "log.parquet").to_pylist()
    assert [row["epoch"] for row in log] == [1, 2]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2

    # anonymize through the registry with the model found in the store
    anonymizer = create_method(method, MethodOptions(seed=5))
    utts = open_corpus(corpus).utterances[:3]
    waves = [torch.from_numpy(read_utterance_audio(u).samples) for u in utts]
    params = [anonymizer.utterance_params(u) for u in utts]
    json.dumps(params)  # recorded in the manifest: must be JSON
    if method != "gengan":
        assert all(p["target"] in card["labels"]["classes"] for p in params)
    outputs = [o.audio for o in anonymizer.process(waves, params)]
    assert [o.shape for o in outputs] == [w.shape for w in waves]
    assert all(torch.isfinite(o).all() for o in outputs)
    again = create_method(method, MethodOptions(seed=5, checkpoint=str(run)))
    assert again.utterance_params(utts[0]) == params[0]
    assert torch.allclose(again.process(waves[:1], params[:1])[0].audio, outputs[0], atol=1e-5)


def test_changed_config_refuses_to_resume(corpus, store, tmp_path):
    run = tmp_path / "run"
    get_trainer("gengan")(
        TrainOptions(corpus=corpus, out=run, config=str(tiny_config(tmp_path / "a.json")), device="cpu")
    )
    other = tiny_config(tmp_path / "b.json", segment_frames=48)
    with pytest.raises(AnoncliError, match="different config"):
        get_trainer("gengan")(TrainOptions(corpus=corpus, out=run, config=str(other), device="cpu"))


def test_missing_attribute_is_a_one_line_error(corpus, store, tmp_path):
    with pytest.raises(AnoncliError, match="no 'accent' label column"):
        get_trainer("gengan")(
            TrainOptions(
                corpus=corpus,
                out=tmp_path / "r",
                attribute="accent",
                config=str(tiny_config(tmp_path / "a.json")),
                device="cpu",
            )
        )


def test_killed_training_resumes_from_last_epoch(corpus, store, tmp_path):
    """Kill `anoncli train` in a subprocess after its first checkpoint; the rerun continues from it."""
    config = tiny_config(tmp_path / "tiny.json")
    run = tmp_path / "run"
    env = dict(os.environ, ANONCLI_TORCH_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "anoncli",
        "train",
        "--method",
        "gengan",
        str(corpus),
        "--out",
        str(run),
        "--config",
        str(config),
        "--device",
        "cpu",
        "--epochs",
        "500",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.pt"
    try:
        deadline = time.time() + 60
        while not last.exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert last.exists(), "no checkpoint was written"
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= done < 500
    result = subprocess.run(command[:-1] + [str(done + 1)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {run} after epoch {done}" in result.stderr
    epochs = [row["epoch"] for row in pq.read_table(run / "log.parquet").to_pylist()]
    assert epochs == list(range(1, done + 2))


def test_long_input_in_chunks_matches_one_pass(corpus, store, tmp_path, monkeypatch):
    """The anonymizer's chunked path (long files, bounded memory) agrees with a single pass."""
    import anoncli.methods.learned as learned

    run = tmp_path / "run"
    summary = get_trainer("gengan")(
        TrainOptions(corpus=corpus, out=run, config=str(tiny_config(tmp_path / "t.json")), device="cpu")
    )
    # without --register a run replaces nothing: `--method gengan` keeps what it used (here: no local model)
    assert summary["registered"] is None and not (store / "gengan").exists()
    method = create_method("gengan", MethodOptions(checkpoint=str(run)))
    utt = open_corpus(corpus).utterances[0]
    wave = torch.from_numpy(read_utterance_audio(utt).samples).repeat(3)  # about 2 s, ~120 frames
    params = [method.utterance_params(utt)]
    whole = method.process([wave], params)[0].audio
    monkeypatch.setattr(learned, "CHUNK_FRAMES", 48)
    monkeypatch.setattr(learned, "CHUNK_OVERLAP", 32)
    chunked = method.process([wave], params)[0].audio
    assert chunked.shape == whole.shape == wave.shape
    assert (chunked - whole).abs().max() < 0.02
