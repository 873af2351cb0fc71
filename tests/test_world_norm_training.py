"""`anoncli train --method world_norm`: the pseudo-speaker distribution fitted through the CLI on synthetic voices."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from synth_audio import voiced
from typer.testing import CliRunner

from anoncli import modelstore
from anoncli.cli.app import app, main
from anoncli.errors import AnoncliError
from anoncli.manifest.reader import read_manifest
from anoncli.methods import MethodOptions, create_method

RATE = 16000
# per gender: base F0 (Hz) and formants (Hz); each speaker is shifted a little from the base
VOICES = {"female": (215.0, (850, 1650, 2950)), "male": (110.0, (620, 1100, 2450))}


def make_corpus(root, genders=("female", "male"), per_gender=3, seconds=0.5):
    """root/<speaker>.wav (one utterance per speaker) with a metadata.csv naming speaker and gender."""
    root.mkdir(parents=True)
    rows = []
    for gender in genders:
        f0, formants = VOICES[gender]
        for i in range(per_gender):
            speaker = f"{gender[0]}{i}"
            scale = 1 + 0.05 * i
            wave = voiced(seconds, RATE, f0 * scale, tuple(f * scale for f in formants), seed=len(rows))
            sf.write(root / f"{speaker}.wav", wave, RATE, subtype="PCM_16")
            rows.append({"file_name": f"{speaker}.wav", "speaker": speaker, "gender": gender})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def train(corpus, run, *extra):
    return CliRunner().invoke(
        app, ["train", "--method", "world_norm", str(corpus), "--out", str(run), "--no-progress", *extra]
    )


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    return tmp_path / "store"


def test_trained_run_anonymizes_resumes_and_registers(tmp_path, store):
    corpus = make_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    result = train(corpus, run, "--param", "exclude_speakers=f2", "--register")
    assert result.exit_code == 0, result.output
    card = json.loads((run / "card.json").read_text())
    assert card["data"]["excluded_speakers"] == ["f2"]
    assert card["data"]["train_speakers"] == ["f0", "f1", "m0", "m1", "m2"]  # speaker-disjoint: f2 is not fitted
    assert card["command"].startswith("anoncli train --method world_norm") and "exclude_speakers=f2" in card["command"]
    state = modelstore.load_model(run / "checkpoints" / "best.pt")
    assert state["method"] == "world_norm" and state["classes"] == ["female", "male"]
    assert state["models"]["sampler"]["speakers"].tolist() == [2, 3]
    # the fitted female distribution is higher in log-F0 (the 81st statistic) than the male one
    means = state["models"]["sampler"]["means"]
    assert float(means[0, -2] - means[1, -2]) > 0.4

    # the run folder and its shipped form load alike and change the voice
    wave = torch.from_numpy(voiced(0.8, RATE, 180.0, (800, 1500, 2700), seed=9))
    outputs = []
    for checkpoint in (run, run / "model.safetensors"):
        method = create_method("world_norm", MethodOptions(checkpoint=str(checkpoint)))
        params = method.pipeline.utterance_params({}, 5)
        outputs.append(method.process([wave], [params])[0].audio)
    # and so does a folder holding the shipped form alone (model.safetensors + card.json), as --checkpoint DIR
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("model.safetensors", "card.json"):
        (shipped / name).write_bytes((run / name).read_bytes())
    assert modelstore.find("world_norm", shipped) == shipped / "model.safetensors"
    method = create_method("world_norm", MethodOptions(checkpoint=str(shipped)))
    outputs.append(method.process([wave], [method.pipeline.utterance_params({}, 5)])[0].audio)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6) and torch.equal(outputs[1], outputs[2])
    assert np.corrcoef(outputs[0].numpy(), wave.numpy())[0, 1] < 0.9

    # a rerun of the finished run fits nothing new: same checkpoint, same model file, same log
    before = {p: (run / p).read_bytes() for p in ("checkpoints/best.pt", "model.safetensors", "log.jsonl")}
    result = train(corpus, run, "--param", "exclude_speakers=f2")
    assert result.exit_code == 0, result.output
    assert {p: (run / p).read_bytes() for p in before} == before

    # --register made it the default model (the local store before the shipped one), and anonymize runs it
    assert modelstore.find("world_norm") == store / "world_norm" / modelstore.MODEL_FILE
    out = tmp_path / "anon"
    result = CliRunner().invoke(
        app,
        ["anonymize", str(corpus), "--method", "world_norm", "--out", str(out), "--jobs", "1", "--no-progress"]
        + ["--no-score"],
    )
    assert result.exit_code == 0, result.output
    rows = read_manifest(out).to_pylist()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert {json.loads(r["params"])["target"] for r in rows} <= {"female", "male"}


def test_diagonal_and_clip_settings_reach_the_model(tmp_path, store):
    corpus = make_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    result = train(corpus, run, "--param", "full_covariance=no", "--param", "clip_sigma=1.5")
    assert result.exit_code == 0, result.output
    method = create_method("world_norm", MethodOptions(checkpoint=str(run)))
    assert method.pipeline.full is False and method.pipeline.sampler.clip_sigma == 1.5
    assert method.config()["model"]["covariance"] == "diagonal"


def refused(monkeypatch, capsys, corpus, run, *extra) -> tuple[int, str]:
    """`anoncli train --method world_norm CORPUS --out RUN EXTRA` as the command line runs it: (exit code, stderr)."""
    argv = ["anoncli", "train", "--method", "world_norm", str(corpus), "--out", str(run), "--no-progress", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_one_gender_corpus_is_refused(tmp_path, store, monkeypatch, capsys):
    corpus = make_corpus(tmp_path / "corpus", genders=("male",))
    code, message = refused(monkeypatch, capsys, corpus, tmp_path / "run")
    assert code == 2, message
    assert "\n" not in message and "one gender class" in message and "m0, m1, m2" in message
    assert not (tmp_path / "run" / "checkpoints").exists()
    # both genders in the corpus, but the held-out speakers take every female one
    corpus = make_corpus(tmp_path / "both", per_gender=2)
    code, message = refused(monkeypatch, capsys, corpus, tmp_path / "run2", "--param", "exclude_speakers=f0,f1")
    assert code == 2 and "\n" not in message and "2 held-out speakers were left out first" in message
    # one speaker of a gender cannot give that gender a distribution
    code, message = refused(monkeypatch, capsys, corpus, tmp_path / "run3", "--param", "exclude_speakers=f0")
    assert code == 2 and "1 female training speaker(s)" in message


def test_checkpoint_folder_with_safetensors_needs_its_card(tmp_path, store):
    """`--checkpoint DIR` takes DIR/model.safetensors only beside its card.json; a run's checkpoints come first,
    and the store registers checkpoints, never the shipped form."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(AnoncliError, match="model.safetensors with its card.json"):
        modelstore.find("world_norm", folder)
    (folder / "card.json").write_text("{}")
    assert modelstore.find("world_norm", folder) == folder / "model.safetensors"
    with pytest.raises(AnoncliError, match="no checkpoint to register"):
        modelstore.register("world_norm", folder)
    (folder / "checkpoints").mkdir()
    torch.save({"method": "world_norm"}, folder / "checkpoints" / "best.pt")
    assert modelstore.find("world_norm", folder) == folder / "checkpoints" / "best.pt"
