"""The bounded residual generator on normalised WORLD features (`gengan-world`, `pcmelgan-world`): the
generator starts as the identity and never moves a frame past its bound, the attackers' evidence is the
envelope's log-mel, one short training run through the CLI, and the model it writes anonymizes as
`--method gengan` / `--method pcmelgan` with the world_norm pipeline."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from anoncli import modelstore
from anoncli.cli.app import app
from anoncli.errors import AnoncliError
from anoncli.methods import MethodOptions, create_method
from anoncli.models.world_nets import (
    BAP,
    FEATURES,
    LOG_F0,
    N_MCEP,
    VOICED,
    WorldResidualGenerator,
    frame_features,
)
from anoncli.synthesis import world_features
from anoncli.training.world_gan import (
    AttackerFeatures,
    EnvelopeSpeakerEmbedding,
    envelope_correlation,
    reference_log_power,
    utterance_statistics,
)

sys.path.insert(0, str(Path(__file__).parent))
from gan_helpers import RATE, voice  # noqa: E402


def frames(seed: int = 0, length: int = 50) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, FEATURES, length, generator=gen)
    x[:, VOICED] = (torch.rand(2, length, generator=gen) > 0.3).float()
    x[:, LOG_F0] = torch.where(x[:, VOICED] > 0, 5.0 + 0.2 * x[:, LOG_F0], torch.zeros(()))
    return x


@pytest.mark.parametrize("body", ["gengan", "pcmelgan", "psegan"])
def test_generator_starts_as_the_identity_and_keeps_its_bound(body):
    x = frames()
    net = WorldResidualGenerator(body, cond=2, width=8, bound=0.5)
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(net(x, cond), x)  # zero-initialised head
    net.set_scaling(torch.zeros(FEATURES), torch.full((FEATURES,), 2.0))
    torch.nn.init.normal_(net.head.weight, std=10.0)
    for length in (50, 7, 1):  # any number of frames (the U-Net pads and crops)
        y = net(x[..., :length], cond, torch.randn(2, 1, length))
        change = (y - x[..., :length]).abs()
        assert y.shape == x[..., :length].shape
        assert change.max() <= 0.5 * 2.0 + 1e-5  # bound × std
        assert change[:, N_MCEP - 1].max() > 0.1  # it does move the envelope
        assert torch.equal(y[:, VOICED], x[:, VOICED, :length])  # voicing and level are kept
        assert torch.all(y[:, LOG_F0][x[:, VOICED, :length] == 0] == 0)  # unvoiced frames keep no F0
    tight = WorldResidualGenerator(body, cond=2, width=8, bound=0.5, f0_bound=0.1)
    tight.set_scaling(torch.zeros(FEATURES), torch.full((FEATURES,), 2.0))
    torch.nn.init.normal_(tight.head.weight, std=10.0)
    y = tight(x, cond, torch.randn(2, 1, 50))
    assert (y - x)[:, LOG_F0].abs().max() <= 0.1 * 2.0 + 1e-5 < (y - x)[:, :N_MCEP].abs().max()
    assert tight.config()["f0_bound"] == 0.1
    with pytest.raises(ValueError):
        WorldResidualGenerator("vits")
    with pytest.raises(ValueError):
        net(x)  # conditioned: the class is needed


def test_attacker_evidence_is_the_envelope_log_mel():
    wave = voice(140.0, 0.6, seed=3, bright=0.7)
    f = world_features.analyse(wave, RATE)
    x = frame_features(f.mcep, f.log_f0, f.voiced, f.bap, f.level_db)[None].requires_grad_(True)
    attack = AttackerFeatures(RATE)
    evidence = attack(x)
    # reference: WORLD's own decoder, the level put back relative to the loudest frame, the same filterbank
    env = world_features.envelope(f) / 10.0 ** (f.level_db.max() / 10.0)
    reference = np.log(env @ attack.bank.double().numpy() + 1e-8).T / 10.0
    np.testing.assert_allclose(evidence[0, :40].detach().numpy(), reference, atol=2e-3)
    stats = utterance_statistics(evidence)
    assert stats.shape == (1, 4 * 40 + 6)
    stats.sum().backward()  # the attackers' gradient reaches the generator's features
    assert x.grad is not None and x.grad[:, :N_MCEP].abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert BAP == N_MCEP + 2
    # the speaker embedding of the envelope: resemblyzer's encoder, unit length, its gradient reaches the frames
    embedder = EnvelopeSpeakerEmbedding(RATE, reference_log_power([wave]))
    x.grad = None
    embedding = embedder(attack.power(x))
    assert embedding.shape == (1, 256) and torch.allclose(embedding.norm(dim=1), torch.ones(1), atol=1e-5)
    embedding.sum().backward()
    assert x.grad[:, :N_MCEP].abs().sum() > 0
    # a long item is embedded in 1.6 s partials: the same vector whatever the item's loudness
    long = torch.cat([x.detach()] * 6, dim=-1)
    quieter = long.clone()
    quieter[:, -1] -= 1.0  # 10 dB down
    assert torch.allclose(embedder(attack.power(long)), embedder(attack.power(quieter)), atol=1e-4)


def test_envelope_correlation_ignores_constant_shifts_and_sees_changed_time_courses():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 40, 160, generator=gen).cumsum(-1)
    assert envelope_correlation(ref, ref).item() == pytest.approx(1.0, abs=1e-5)
    shifted = ref + torch.linspace(-3, 3, 40)[None, :, None]  # a constant tilt per band
    assert envelope_correlation(shifted, ref).item() == pytest.approx(1.0, abs=1e-5)
    reversed_time = ref.flip(-1)
    assert envelope_correlation(reversed_time, ref).item() < 0.5
    short = envelope_correlation(ref[..., :30], ref[..., :30])  # shorter than a segment: one segment
    assert short.item() == pytest.approx(1.0, abs=1e-5)


def make_gender_corpus(root: Path) -> Path:
    """10 speakers, 5 per gender, 3 utterances each (about a second)."""
    root.mkdir(parents=True)
    rows = []
    for s in range(10):
        gender = "female" if s % 2 else "male"
        f0 = (210.0 if s % 2 else 110.0) + 7 * s
        for k in range(3):
            rel = f"s{s}_{k}.wav"
            sf.write(root / rel, voice(f0, 0.8 + 0.1 * k, seed=10 * s + k, bright=0.5 + 0.04 * s), RATE)
            rows.append({"file_name": rel, "speaker": f"s{s}", "gender": gender})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.parametrize("trainer", ["gengan-world", "pcmelgan-world"])
def test_one_short_run_writes_a_model_that_anonymizes(trainer, tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    corpus = make_gender_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    args = ["train", "--method", trainer, str(corpus), "--out", str(run), "--config", "quick", "--seed", "1"]
    args += ["--param", "val_fraction=0.5", "--param", "stoi_utterances=2", "--param", "exclude_speakers=s9"]
    result = CliRunner().invoke(app, [*args, "--format", "json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 2
    state = modelstore.load_model(run / "checkpoints" / "best.pt")
    method = trainer.removesuffix("-world")
    assert state["method"] == method and state["config"]["synthesis"] == "world_norm"
    assert state["config"]["generator"]["body"] == method and {"generator", "sampler"} <= set(state["models"])
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert all(0.0 <= r["val_informed"] <= 100.0 and 0.0 < r["val_stoi"] <= 1.0 for r in epochs)
    card = json.loads((run / "model.json").read_text())
    assert "s9" in card["data"]["excluded_speakers"] and "s9" not in card["data"]["train_speakers"]
    assert not set(card["data"]["validation_speakers"]) & set(card["data"]["train_speakers"])
    # the run anonymizes as the paper's method, reproducibly per seed, the length kept
    anonymizer = create_method(method, MethodOptions(checkpoint=str(run), seed=3))
    wave = torch.from_numpy(voice(120.0, 0.9, seed=99, bright=0.6))
    params = anonymizer.pipeline.utterance_params({}, 5)
    first = anonymizer.process([wave], [params])[0].audio
    assert first.shape == wave.shape and torch.isfinite(first).all()
    assert torch.equal(first, anonymizer.process([wave], [params])[0].audio)
    # --param strength scales the generator's change: 0 is the normalisation alone
    none = create_method(method, MethodOptions(checkpoint=str(run), seed=3, extra={"strength": "0"}))
    features = world_features.analyse(wave.numpy(), RATE)
    from anoncli.synthesis.world_norm import impose, utterance_stats

    gender, target = none.pipeline.sampler.draw(params["pseudo_seed"])
    normalised = impose(features, utterance_stats(features), target)
    unchanged = none.pipeline.generate(normalised, gender, params["pseudo_seed"])
    np.testing.assert_allclose(unchanged.mcep, normalised.mcep, atol=1e-4)
    for bad in ("1.5", "x"):
        with pytest.raises(AnoncliError):
            create_method(method, MethodOptions(checkpoint=str(run), extra={"strength": bad}))
    with pytest.raises(AnoncliError):  # a mel-domain or world_norm model has nothing to scale
        create_method("world_norm", MethodOptions(extra={"strength": "0.5"}))


def make_emotion_corpus(root: Path) -> Path:
    """6 speakers (3 per gender), 2 emotions, 3 utterances each: angry ones higher and brighter."""
    root.mkdir(parents=True)
    rows = []
    for s in range(6):
        for k in range(3):
            emotion = "angry" if k % 2 else "calm"
            f0 = (200.0 if s % 2 else 105.0) * (1.2 if emotion == "angry" else 1.0)
            rel = f"s{s}_{k}.wav"
            sf.write(root / rel, voice(f0, 0.7 + 0.1 * k, seed=10 * s + k, bright=0.75 if k % 2 else 0.55), RATE)
            rows.append(
                {"file_name": rel, "speaker": f"s{s}", "gender": "female" if s % 2 else "male", "emotion": emotion}
            )
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_psegan_world_trains_on_speaker_normalised_features_and_anonymizes_in_two_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    corpus = make_emotion_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    args = ["train", "--method", "psegan-world", str(corpus), "--out", str(run), "--config", "quick", "--seed", "1"]
    args += ["--param", "val_fraction=0.34", "--param", "stoi_utterances=1"]
    result = CliRunner().invoke(app, [*args, "--format", "json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = modelstore.load_model(run / "checkpoints" / "best.pt")
    assert state["method"] == "psegan" and state["attribute"] == "emotion"
    assert state["config"]["normalisation"] == "speaker" and set(state["models"]) >= {"generator"}
    assert "sampler" not in state["models"] and state["config"]["generator"]["cond"] == 0
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(0.5 < r["speaker_cosine"] <= 1.0 for r in steps if r["kind"] == "step")  # the speaker matcher ran
    # the first pass pools each speaker's statistics; a file alone without a speaker label is its own key
    anonymizer = create_method("psegan", MethodOptions(checkpoint=str(run)))
    assert anonymizer.two_pass
    from anoncli.corpus import open_corpus

    utterances = open_corpus(corpus).utterances
    table = anonymizer.corpus_statistics(utterances, progress=False)
    assert sorted(table) == [f"speaker:s{s}" for s in range(6)] and len(table["speaker:s0"]["mcep_mean"]) == 40
    # the job: two passes, every file anonymized, the statistics of the original voices not left behind
    out = tmp_path / "anon"
    result = CliRunner().invoke(
        app,
        ["anonymize", str(corpus), "--method", "psegan", "--checkpoint", str(run), "--out", str(out)]
        + ["--jobs", "1", "--no-progress", "--no-score"],
    )
    assert result.exit_code == 0, result.output
    from anoncli.manifest.reader import read_manifest

    rows = read_manifest(out).to_pylist()
    assert len(rows) == 18 and {r["status"] for r in rows} == {"ok"}
    assert {json.loads(r["params"])["speaker"] for r in rows} == {f"speaker:s{s}" for s in range(6)}
    assert not list(out.glob(".corpus-statistics*"))
    # two utterances of one speaker are brought to the same F0 level (the speaker's, not the emotion's)
    from anoncli.synthesis.world_features import analyse

    def median_f0(path):
        f = analyse(sf.read(path)[0], RATE)
        return float(np.median(f.f0[f.voiced]))

    by_name = {Path(r["source_path"]).name: out / r["output_path"] for r in rows}
    calm, angry = median_f0(by_name["s0_0.wav"]), median_f0(by_name["s0_1.wav"])
    assert abs(np.log(angry / calm)) < 0.6 * np.log(1.2)
