"""Compact WORLD features and the explicit (training-free) pseudo-speaker and emotion normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pyworld
import soundfile as sf
import torch
from synth_audio import voiced
from test_learned_pipelines import whispered
from typer.testing import CliRunner

from anoncli import modelstore
from anoncli.cli.app import app
from anoncli.errors import AudioError
from anoncli.manifest.reader import read_manifest
from anoncli.methods import MethodOptions, create_method
from anoncli.methods.world_norm import save_model
from anoncli.synthesis import world_features as wf
from anoncli.synthesis.world_norm import (
    STAT_DIM,
    PseudoSpeakers,
    Stats,
    fit_pseudo_speakers,
    flatten_to_speaker,
    impose,
    pool_stats,
    utterance_stats,
)

RATE = 16000
# two synthetic voices far apart: a high voice with high formants, a low one with low formants
HIGH = {"f0": 220.0, "formants": (850, 1700, 3000)}
LOW = {"f0": 105.0, "formants": (600, 1050, 2400)}


def speech(seconds=1.0, seed=0, **voice) -> np.ndarray:
    return voiced(seconds, RATE, seed=seed, **voice)


def active_mean_f0(wave: np.ndarray) -> float:
    features = wf.analyse(wave, RATE, aperiodicity=False)
    return float(np.exp(features.log_f0[features.voiced].mean()))


def sampler(seed: int = 0) -> PseudoSpeakers:
    """A pseudo-speaker distribution fitted on synthetic speakers' statistics (3 per gender)."""
    stats, genders = {}, {}
    for i in range(3):
        for gender, base in (("female", HIGH), ("male", LOW)):
            voice = {"f0": base["f0"] * (1 + 0.06 * i), "formants": tuple(f * (1 + 0.04 * i) for f in base["formants"])}
            stats[f"{gender}{i}"] = pool_stats(
                [wf.analyse(speech(0.5, seed=seed + i, **voice), RATE, aperiodicity=False)]
            )
            genders[f"{gender}{i}"] = gender
    return fit_pseudo_speakers(stats, genders)


def test_round_trip_keeps_envelope_level_and_f0():
    wave = speech(1.0, **LOW)
    features = wf.analyse(wave, RATE)
    assert features.mcep.shape == (len(features.f0), wf.N_MCEP) and features.bap.shape[0] == len(features.f0)
    # the decoded envelope against WORLD's own (uncoded) CheapTrick envelope
    x = wave.astype(np.float64)
    f0, times = pyworld.dio(x, RATE, f0_floor=60, f0_ceil=600, frame_period=wf.FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, times, RATE)
    reference = pyworld.cheaptrick(x, f0, times, RATE, f0_floor=60, fft_size=wf.fft_size(RATE))
    error_db = 10 * np.abs(np.log10(wf.envelope(features)) - np.log10(reference))
    assert np.mean(error_db) < 1.0
    # and the resynthesised wave analysed again
    out = wf.synthesize(features)
    assert out.shape == wave.shape and out.dtype == np.float32
    again = wf.analyse(out, RATE)
    active = features.level_db > features.level_db.max() - 30
    assert np.mean(np.abs(again.level_db - features.level_db)[active]) < 1.5
    both = features.voiced & again.voiced
    assert both.sum() > 0.9 * features.voiced.sum()
    assert np.median(np.abs(again.log_f0[both] - features.log_f0[both])) < 0.02


def test_normalisation_imposes_the_drawn_target_whatever_the_source():
    pseudo = sampler()
    gender, target = pseudo.draw(seed=7)
    sources = [wf.analyse(speech(1.0, seed=1, **HIGH), RATE), wf.analyse(speech(1.0, seed=2, **LOW), RATE)]
    before = [utterance_stats(f) for f in sources]
    assert abs(before[0].f0_mean - before[1].f0_mean) > 0.5  # the sources differ by an octave
    target_cov = target.mcep_corr * np.outer(target.mcep_std, target.mcep_std)
    f0_means = []
    for features, stats in zip(sources, before):
        diagonal = impose(features, stats, target, full=False)
        after = utterance_stats(diagonal)
        np.testing.assert_allclose(after.mcep_mean, target.mcep_mean, atol=1e-9)
        np.testing.assert_allclose(after.mcep_std, target.mcep_std, rtol=1e-9)
        # full: whitened with the source's covariance, coloured with the target's; on frames of a known,
        # well-conditioned covariance (the synthetic voices' frames hardly vary), different for each source
        rng = np.random.default_rng(len(f0_means))
        mixing = 0.3 * rng.standard_normal((wf.N_MCEP, wf.N_MCEP)) / np.sqrt(wf.N_MCEP) + np.eye(wf.N_MCEP)
        frames = rng.standard_normal((4000, wf.N_MCEP)) @ mixing + rng.standard_normal(wf.N_MCEP)
        many = features.with_(
            mcep=frames,
            level_db=np.zeros(len(frames)),
            log_f0=np.zeros(len(frames)),
            voiced=np.zeros(len(frames), bool),
        )
        out = impose(many, utterance_stats(many), target)
        np.testing.assert_allclose(out.mcep.mean(axis=0), target.mcep_mean, atol=1e-9)
        error = np.linalg.norm(np.cov(out.mcep, rowvar=False, bias=True) - target_cov) / np.linalg.norm(target_cov)
        diagonal_error = np.linalg.norm(
            np.cov(impose(many, utterance_stats(many), target, full=False).mcep, rowvar=False, bias=True) - target_cov
        ) / np.linalg.norm(target_cov)
        assert error < 0.05 and diagonal_error > 4 * error
        out = impose(features, stats, target)
        after = utterance_stats(out)
        assert after.f0_mean == pytest.approx(target.f0_mean) and after.f0_std == pytest.approx(target.f0_std)
        np.testing.assert_array_equal(out.voiced, features.voiced)
        f0_means.append(active_mean_f0(wf.synthesize(out)))  # heard: resynthesised, analysed again
    target_hz = float(np.exp(target.f0_mean))
    assert f0_means == pytest.approx([target_hz, target_hz], rel=0.05)


def test_draw_is_reproducible_per_seed_and_both_genders_come_out():
    pseudo = sampler()
    g1, s1 = pseudo.draw(3)
    g2, s2 = pseudo.draw(3)
    assert g1 == g2 and np.array_equal(s1.vector, s2.vector)
    draws = [pseudo.draw(seed) for seed in range(40)]
    assert len({round(s.f0_mean, 9) for _, s in draws}) == 40  # every seed its own pseudo-speaker
    genders = [g for g, _ in draws]
    assert 10 <= genders.count("female") <= 30
    # female draws are higher on average, as the fitted speakers were
    mean = {g: np.mean([s.f0_mean for gg, s in draws if gg == g]) for g in ("female", "male")}
    assert mean["female"] > mean["male"] + 0.3
    # the parameters round-trip through their arrays, and a fit is deterministic
    again = PseudoSpeakers.from_arrays(pseudo.arrays(), pseudo.genders)
    assert np.array_equal(again.draw(5)[1].vector, pseudo.draw(5)[1].vector)
    assert np.array_equal(sampler().means, pseudo.means) and pseudo.means.shape == (2, STAT_DIM)
    with pytest.raises(ValueError):
        PseudoSpeakers.from_arrays(pseudo.arrays(), ("female", "male", "other"))


def test_unvoiced_input_keeps_no_f0_and_resynthesises():
    wave = whispered(1.0, seed=1)  # no frame DIO calls voiced
    features = wf.analyse(wave, RATE)
    assert not features.voiced.any()
    stats = utterance_stats(features)
    assert stats.f0_mean is None
    _, target = sampler().draw(1)
    out = impose(features, stats, target)
    assert not out.voiced.any()
    np.testing.assert_allclose(utterance_stats(out).mcep_mean, target.mcep_mean, atol=1e-9)
    audio = wf.synthesize(out)
    assert audio.shape == wave.shape and np.isfinite(audio).all() and np.abs(audio).max() > 1e-3
    with pytest.raises(AudioError):
        wf.analyse(wave[:40], RATE)


def test_emotion_normalisation_gives_the_speaker_statistics_and_flattens_contours():
    speaker = pool_stats([wf.analyse(speech(0.8, seed=s, **LOW), RATE) for s in range(3)])
    # an "excited" utterance of the speaker: higher, with a deep pitch swing
    features = wf.analyse(voiced(1.5, RATE, f0=140.0, formants=LOW["formants"], depth=0.25), RATE)
    out = flatten_to_speaker(features, speaker, f0_keep=0.3, level_keep=0.5)
    v = features.voiced
    assert out.log_f0[v].mean() == pytest.approx(speaker.f0_mean, abs=1e-9)
    np.testing.assert_allclose(utterance_stats(out).mcep_mean, speaker.mcep_mean, atol=1e-9)

    def swing(log_f0):
        t = np.arange(len(log_f0))[v]
        line = np.polyval(np.polyfit(t, log_f0[v], 1), t)
        return np.std(log_f0[v] - line)

    ratio = swing(out.log_f0) / swing(features.log_f0)
    assert ratio == pytest.approx(0.3 * speaker.f0_std / utterance_stats(features).f0_std, rel=1e-6)
    unchanged = flatten_to_speaker(features, speaker, f0_keep=1.0, level_keep=1.0)
    assert swing(unchanged.log_f0) > swing(out.log_f0) * 3
    assert len(wf.synthesize(out)) == features.length
    with pytest.raises(ValueError):
        flatten_to_speaker(features, speaker, f0_keep=1.5)


def test_stats_vector_round_trip():
    stats = Stats(np.arange(40.0), np.full(40, 0.5), 5.0, 0.2, -30.0)
    back = Stats.from_vector(stats.vector)
    np.testing.assert_allclose(back.mcep_std, stats.mcep_std)
    assert back.f0_mean == 5.0 and back.f0_std == pytest.approx(0.2)
    with pytest.raises(ValueError):
        _ = Stats(stats.mcep_mean, stats.mcep_std, None, None, 0.0).vector


def test_anonymize_loads_a_saved_sampler(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    model = save_model(sampler(), tmp_path / "model", {"trained_on": "synthetic voices"})
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "a.wav", speech(0.8, seed=4, **HIGH), RATE, subtype="PCM_16")
    sf.write(corpus / "b.wav", whispered(0.6, seed=1), RATE, subtype="PCM_16")
    out = tmp_path / "anon"
    result = CliRunner().invoke(
        app,
        [
            "anonymize",
            str(corpus),
            "--method",
            "world_norm",
            "--checkpoint",
            str(model),
            "--out",
            str(out),
            "--jobs",
            "1",
            "--no-progress",
            "--no-score",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_manifest(out).to_pylist()
    assert sorted(r["status"] for r in rows) == ["ok", "ok"]
    for row in rows:
        original, _ = sf.read(corpus / row["source_path"].split("/")[-1])
        assert json.loads(row["params"])["target"] in ("female", "male")
        anonymized, rate = sf.read(out / row["output_path"])
        assert rate == RATE and len(anonymized) == len(original)
        assert not np.allclose(anonymized, original, atol=1e-3)
    # the same seed draws the same pseudo-speaker through the method's parameters
    method = create_method("world_norm", MethodOptions(checkpoint=str(model)))
    params = method.pipeline.utterance_params({}, 11)
    assert params == method.pipeline.utterance_params({}, 11) and params["target"] in ("female", "male")
    first = method.process([torch.from_numpy(speech(0.8, seed=4, **HIGH))], [params])[0].audio
    second = method.process([torch.from_numpy(speech(0.8, seed=4, **HIGH))], [params])[0].audio
    assert torch.equal(first, second)
    # a model fitted for the per-dimension (diagonal) normalisation says so in its config
    diagonal = save_model(sampler(), tmp_path / "diagonal", covariance="diagonal")
    method = create_method("world_norm", MethodOptions(checkpoint=str(diagonal)))
    assert method.pipeline.full is False and method.config()["model"]["covariance"] == "diagonal"
    assert not torch.equal(method.process([torch.from_numpy(speech(0.8, seed=4, **HIGH))], [params])[0].audio, first)
    with pytest.raises(ValueError):
        save_model(sampler(), tmp_path / "bad", covariance="block")


# --------------------------------------------------------------------------- the shipped model

SHIPPED = Path(modelstore.__file__).resolve().parent / "pretrained" / "world_norm"


def test_shipped_model_card_is_complete():
    weights = SHIPPED / "model.safetensors"
    assert weights.stat().st_size < 512 * 1024  # fitted statistics: a few hundred kB at most
    card = json.loads((SHIPPED / "card.json").read_text())
    assert card["method"] == "world_norm" and card["model"]["config"]["synthesis"] == "world_norm"
    assert card["model"]["classes"] == ["female", "male"] and card["model"]["attribute"] == "gender"
    data = card["data"]
    assert "CC BY 4.0" in data["licence"] and data["corpus"]
    # speaker-disjoint from the speakers its figures are measured on
    assert len(data["excluded_speakers"]) == 19 and not set(data["excluded_speakers"]) & set(data["train_speakers"])
    assert sum(data["train_speakers_by_class"].values()) == len(data["train_speakers"])
    assert card["command"].startswith("anoncli train --method world_norm") and isinstance(card["seed"], int)
    assert card["heldout"]["gender_informed_accuracy"] and card["heldout"]["protocol"]
    notice = (Path(modelstore.__file__).resolve().parents[1] / "NOTICE").read_text()
    assert "anoncli/pretrained/world_norm/" in notice


def test_shipped_model_changes_a_voice_reproducibly_per_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))  # a fresh machine: no local model
    method = create_method("world_norm", MethodOptions(seed=3))
    assert method.checkpoint_path == SHIPPED / "model.safetensors"
    assert method.config()["model_sha256"] == modelstore.file_sha256(method.checkpoint_path)
    listed = {(m["method"], m["source"]) for m in modelstore.list_models()}
    assert ("world_norm", "shipped") in listed
    wave = torch.from_numpy(speech(1.0, seed=2, **LOW))

    def run(seed: int) -> np.ndarray:
        params = method.pipeline.utterance_params({}, seed)
        return method.process([wave], [params])[0].audio.numpy()

    first, again, other = run(11), run(11), run(12)
    assert first.shape == wave.shape and np.isfinite(first).all() and np.abs(first).max() > 0.01
    assert np.array_equal(first, again)  # the same seed, the same pseudo-speaker and output
    assert not np.allclose(first, other, atol=1e-3)  # another seed, another one
    assert abs(np.corrcoef(first, wave.numpy())[0, 1]) < 0.5
    # the voice heard moves: the output's mean F0 is the drawn pseudo-speaker's, not the source's
    _, target = method.pipeline.sampler.draw(11)
    assert active_mean_f0(first) == pytest.approx(np.exp(target.f0_mean), rel=0.05)
