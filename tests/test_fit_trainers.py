"""Siamese, RDAL-M, ASV and score-attackers on the shared fit loop: one short `anoncli train` run each on
synthetic audio, and a killed run resumed to the same final weights as an uninterrupted run with the same seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from synth_audio import make_corpus, voiced
from typer.testing import CliRunner

from anoncli.cli.app import app
from anoncli.errors import AnoncliError
from anoncli.methods import MethodOptions, create_method
from anoncli.modelstore import load_checkpoint


class Killed(BaseException):
    """Stands for SIGKILL: no handler of the loop catches it, so nothing is saved on the way out."""


def _kill_after(monkeypatch, steps: int) -> None:
    """The run dies in the middle of a batch once `steps` optimiser steps have been taken (every trainer
    here steps Adam; the steps of RDAL-M's adversary reset count too)."""
    original = torch.optim.Adam.step
    taken = {"n": 0}

    def step_or_die(self, *args, **kwargs):
        taken["n"] += 1
        if taken["n"] > steps:
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_or_die)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the run's last checkpoint, keyed "<module>.<name>"."""
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    return {f"{module}.{name}": value for module, tensors in state["models"].items() for name, value in tensors.items()}


def _train(args: list) -> dict:
    result = CliRunner().invoke(app, ["train", *map(str, args), "--device", "cpu", "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def _resumes_to_the_same_weights(monkeypatch, tmp_path, args: list, kill_after: int) -> None:
    _train([*args, "--out", tmp_path / "whole"])
    _kill_after(monkeypatch, kill_after)
    with pytest.raises(Killed):
        CliRunner().invoke(
            app,
            ["train", *map(str, args), "--out", str(tmp_path / "cut"), "--device", "cpu", "--quiet"],
            catch_exceptions=False,
        )
    monkeypatch.undo()
    assert (tmp_path / "cut" / "checkpoints" / "last.pt").is_file(), "the killed run left no checkpoint behind"
    cut = _weights(tmp_path / "cut")
    _train([*args, "--out", tmp_path / "cut"])
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert whole.keys() == resumed.keys()
    assert any(not torch.equal(cut[k], whole[k]) for k in whole), "the kill came after the last update"
    different = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert not different, f"resumed weights differ: {different[:5]}"


# --------------------------------------------------------------------------- Siamese


SIAMESE = [
    "--param",
    "pairs_per_epoch=8",
    "--param",
    "batch_size=4",
    "--param",
    "head_epochs=2",
    "--param",
    "width=0.125",
    "--param",
    "groups=2",
    "--param",
    "crop_s=0.5",
    "--param",
    "val_speakers=spk_c",
    "--utility",
    "gender",
]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("speech") / "corpus", per_speaker=4, duration_s=0.6)


def test_siamese_one_epoch_through_the_cli(speech, tmp_path):
    _train([speech, "--method", "siamese", "--out", tmp_path / "run", "--epochs", "1", *SIAMESE])
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["method"] == "siamese" and {"net", "head"} <= set(state["models"])
    assert state["trainer_config"]["epochs"] == 1 and state["trainer_config"]["head_epochs"] == 2
    assert state["epoch"] == 3 and state["config"]["groups"] == 2 and state["format_version"] >= 2
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["held_out_speakers"] == ["spk_c"] and 0 <= card["held_out"]["utility_accuracy"] <= 1
    # A checkpoint of the older shape (one top-level key per network, no format_version) loads through
    # modelstore's converter and gives the same features; one without the extractor is a one-line error.
    old = {
        "method": "siamese",
        "net": state["models"]["net"],
        "head": state["models"]["head"],
        "opt": state["optimizers"]["features"],
        "config": {**state["trainer_config"], "utility": "gender"},
        "classes": state["classes"],
        "train_speakers": state["train_speakers"],
        "epoch": 1,
        "head_epoch": 2,
    }
    torch.save(old, tmp_path / "old.pt")
    wave = [torch.from_numpy(voiced(0.7, f0=150.0))]
    new_features = create_method("siamese", MethodOptions(checkpoint=str(tmp_path / "run"))).process(wave, [{}])
    old_method = create_method("siamese", MethodOptions(checkpoint=str(tmp_path / "old.pt")))
    assert np.array_equal(old_method.process(wave, [{}])[0].features, new_features[0].features)
    assert old_method.train_speakers == ["spk_a", "spk_b"]
    del old["net"]
    torch.save(old, tmp_path / "broken.pt")
    with pytest.raises(AnoncliError, match="broken.pt: holds no 'net' network"):
        create_method("siamese", MethodOptions(checkpoint=str(tmp_path / "broken.pt")))


@pytest.mark.parametrize("kill_after", [3, 6], ids=["in-the-extractor-stage", "in-the-head-stage"])
def test_siamese_killed_and_resumed_ends_with_the_same_weights(speech, tmp_path, monkeypatch, kill_after):
    # 2 extractor epochs of 2 steps, then 2 head epochs of 2 steps (8 utterances of spk_a and spk_b)
    _resumes_to_the_same_weights(
        monkeypatch, tmp_path, [speech, "--method", "siamese", "--epochs", "2", "--seed", "3", *SIAMESE], kill_after
    )


# --------------------------------------------------------------------------- RDAL-M


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory) -> Path:
    from anoncli.mixtures import make_mixtures, synthesize_events

    root = tmp_path_factory.mktemp("rdalm")
    speech = make_corpus(root / "speech", per_speaker=3, duration_s=0.5)
    events = synthesize_events(root / "events", per_class=6, duration_s=0.5, classes=("tone", "clicks"), seed=1)
    return make_mixtures(speech, events, root / "mix", duration_s=0.5, test_fraction=0.5, seed=4)


RDALM = [
    "--param",
    "unet_epochs=2",
    "--param",
    "warmup_epochs=1",
    "--param",
    "ramp_epochs=1",
    "--param",
    "refresh_every=2",
    "--param",
    "refresh_epochs=1",
    "--param",
    "unet_width=0.0625",
    "--param",
    "extractor_width=0.0625",
    "--param",
    "batch_size=4",
    "--param",
    "clip_s=0.5",
]


def test_rdalm_one_epoch_through_the_cli(mixtures, tmp_path):
    _train([mixtures, "--method", "rdalm", "--out", tmp_path / "run", "--epochs", "1", *RDALM])
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["method"] == "rdalm" and "pipeline" in state["models"] and state["classes"] == ["clicks", "tone"]


def test_rdalm_killed_after_an_adversary_reset_resumes_to_the_same_weights(mixtures, tmp_path, monkeypatch):
    # the mixture corpus's training half: 2 U-Net epochs, then features epochs 0..2 with the reset at 2;
    # the kill falls in the last epoch, after the fresh adversary was trained
    args = [mixtures, "--method", "rdalm", "--epochs", "3", "--seed", "5", *RDALM]
    _resumes_to_the_same_weights(monkeypatch, tmp_path, args, kill_after=_adam_steps(monkeypatch, args, tmp_path) - 1)


def test_rdalm_killed_in_the_mask_stage_resumes_to_the_same_weights(mixtures, tmp_path, monkeypatch):
    _resumes_to_the_same_weights(
        monkeypatch, tmp_path, [mixtures, "--method", "rdalm", "--epochs", "2", "--seed", "5", *RDALM], kill_after=3
    )


def _adam_steps(monkeypatch, args: list, tmp_path: Path) -> int:
    """How many optimiser steps a whole run takes."""
    original = torch.optim.Adam.step
    taken = {"n": 0}

    def counted(self, *a, **k):
        taken["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    _train([*args, "--out", tmp_path / "counted"])
    monkeypatch.undo()
    return taken["n"]


# --------------------------------------------------------------------------- ASV (ECAPA-TDNN)


def _asv_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(
        json.dumps({"batch_size": 4, "crop_s": 0.5, "channels": [16, 16, 16, 16, 48], "lin_neurons": 16, "n_mels": 24})
    )
    return path


def test_asv_one_epoch_through_the_cli_and_evaluate_reads_it(speech, tmp_path):
    from anoncli.scoring.embeddings import load_backend

    # 12 utterances in batches of 5: the last batch holds 2
    _train(
        [
            speech,
            "--method",
            "asv",
            "--out",
            tmp_path / "run",
            "--epochs",
            "1",
            "--config",
            _asv_config(tmp_path),
            "--batch-size",
            "5",
        ]
    )
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["method"] == "asv" and {"encoder", "classifier"} <= set(state["models"])
    backend = load_backend(tmp_path / "run")
    g = np.random.default_rng(0)
    vectors = backend.embed([g.standard_normal(8000).astype(np.float32), g.standard_normal(12000).astype(np.float32)])
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_asv_a_lone_last_item_does_not_stop_the_epoch(speech, tmp_path):
    # 12 utterances in batches of 11: batch norm cannot train on the lone 12th, which waits for the next epoch
    _train(
        [
            speech,
            "--method",
            "asv",
            "--out",
            tmp_path / "run",
            "--epochs",
            "1",
            "--config",
            _asv_config(tmp_path),
            "--batch-size",
            "11",
            "--param",
            "channels=8,8,8,8,24",
            "--param",
            "amp=off",
        ]
    )
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 1 and state["config"]["channels"] == [8, 8, 8, 8, 24]
    assert state["trainer_config"]["amp"] is False


def test_asv_killed_and_resumed_ends_with_the_same_weights(speech, tmp_path, monkeypatch):
    # 3 epochs of 3 steps (12 utterances, batches of 4); the kill falls in the second epoch
    _resumes_to_the_same_weights(
        monkeypatch,
        tmp_path,
        [speech, "--method", "asv", "--epochs", "3", "--seed", "2", "--config", _asv_config(tmp_path)],
        kill_after=4,
    )


# --------------------------------------------------------------------------- score-attackers


def _labelled_corpus(
    root: Path, speakers: dict[str, tuple[str, float]], extra: dict[str, list[str]] | None = None, per_speaker: int = 3
) -> None:
    """root/<speaker>_<i>.wav and metadata.csv with speaker, gender (and the `extra` columns, one value per file)."""
    root.mkdir(parents=True)
    rows = []
    for k, (speaker, (gender, f0)) in enumerate(speakers.items()):
        for i in range(per_speaker):
            name = f"{speaker}_{i}.wav"
            formants = (850, 1600, 2900) if gender == "female" else (650, 1100, 2450)
            sf.write(root / name, voiced(1.2, 16000, f0 * (1 + 0.04 * i), formants, seed=10 * k + i), 16000)
            row = {"file_name": name, "speaker": speaker, "gender": gender}
            row.update(
                {column: values[(k * per_speaker + i) % len(values)] for column, values in (extra or {}).items()}
            )
            rows.append(row)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_score_attackers_fit_and_the_scorer_reads_them(tmp_path):
    from anoncli.jobs.scores import load_attackers

    speakers = {f"f{i}": ("female", 190.0 + 12 * i) for i in range(3)}
    speakers.update({f"m{i}": ("male", 100.0 + 9 * i) for i in range(3)})
    _labelled_corpus(tmp_path / "corpora" / "librispeech-dev", speakers)
    _labelled_corpus(tmp_path / "corpora" / "ravdess-dev", speakers, {"emotion": ["neutral", "angry"]}, per_speaker=2)
    out = tmp_path / "attackers"
    args = [
        tmp_path / "corpora",
        "--method",
        "score-attackers",
        "--out",
        out,
        "--seed",
        "1",
        "--param",
        "corpora=librispeech-dev,ravdess-dev",
        "--param",
        "c_grid=0.1,1",
        "--param",
        "outer_folds=2",
        "--param",
        "inner_folds=2",
    ]
    _train(args)
    attackers, card = load_attackers(out)
    assert [a.name for a in attackers] == ["gender", "emotion-ravdess"]  # no emodb-dev: no emotion-emodb
    gender = attackers[0]
    assert gender.classes == ["female", "male"] and card["seed"] == 1 and card["attackers"][0]["C"] in (0.1, 1.0)
    assert card["attackers"][0]["training_data"] == {
        "librispeech-dev": {"utterances": 18, "speakers": 6},
        "ravdess-dev": {"utterances": 12, "speakers": 6},
    }
    assert card["attackers"][0]["held_out_speakers"]["folds"].startswith("2 outer")
    features = np.load(out / "cache" / "features-librispeech-dev.npz")["features"]
    p = gender.probabilities(features)
    assert p.shape == (18, 2) and np.allclose(p.sum(1), 1)
    # the run folder is the loop's: the fitted attackers are in its checkpoint, their figures in its log
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["method"] == "score-attackers" and state["trainer_config"]["c_grid"] == [0.1, 1.0]
    assert torch.equal(
        state["extra"]["attackers"]["gender"]["tensors"]["weight"], torch.from_numpy(gender.weight.astype(np.float32))
    )
    assert "val_gender_accuracy" in json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    # the same command again: nothing to fit, the outputs are written again from the checkpoint
    (out / "gender.safetensors").unlink()
    _train(args)
    assert np.array_equal(load_attackers(out)[0][0].weight, gender.weight)
    # --overwrite fits again from the cached feature vectors: the same attackers
    _train([*args, "--overwrite"])
    assert np.array_equal(load_attackers(out)[0][0].weight, gender.weight)


# --------------------------------------------------------------------------- loop services the ports use


def test_optimize_with_two_names_steps_both_from_one_backward_and_clips_each(tmp_path):
    from anoncli.models.rdalm_nets import grad_reverse
    from anoncli.training import TrainOptions
    from anoncli.training.loop import TrainConfig, Trainer

    torch.manual_seed(0)
    extractor, adversary = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)

    class Pair(Trainer):
        def optimizers(self):
            return self.opts

    trainer = Pair(TrainOptions(corpus=tmp_path, out=tmp_path / "run", device="cpu"), TrainConfig(grad_clip=0.01))
    trainer.opts = {
        "features": torch.optim.SGD(extractor.parameters(), lr=1.0),
        "disc": torch.optim.SGD(adversary.parameters(), lr=1.0),
    }
    before = [p.detach().clone() for p in (*extractor.parameters(), *adversary.parameters())]
    loss = adversary(grad_reverse(extractor(torch.randn(8, 4)), 1.0)).pow(2).mean() * 100
    trainer.optimize(("features", "disc"), loss)
    after = list(extractor.parameters()) + list(adversary.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # both stepped
    for module, start in ((extractor, before[:2]), (adversary, before[2:])):  # each clipped to 0.01 on its own
        step = torch.cat([(b - a.detach()).flatten() for a, b in zip(module.parameters(), start)])
        assert float(step.norm()) == pytest.approx(0.01, rel=1e-4)
