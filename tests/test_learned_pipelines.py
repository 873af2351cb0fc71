"""The learned methods' pipelines: chosen by the model's declaration, and never handing the input back unchanged.

Whispered speech (noise through formant resonators) and very short loud cuts
have no frame WORLD calls voiced; they still carry the speaker's envelope,
so the shipped GenGAN, PCMelGAN and PSEGAN must transform them. A file too
short for one analysis frame fails with the reason instead of passing.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import lfilter
from test_shipped_models import _energy_range_db, params_for, voiced_signal

from anoncli.errors import AnoncliError, AudioError
from anoncli.jobs.engine import AnonymizeConfig, run_anonymize
from anoncli.manifest.reader import read_manifest
from anoncli.methods import MethodOptions, create_method, method_class
from anoncli.methods.mel_pipeline import MelPipeline
from anoncli.methods.source_filter_pipeline import SourceFilterPipeline
from anoncli.methods.world_norm import WorldNormPipeline
from anoncli.models.generators import gengan_generator
from anoncli.synthesis import source_filter

RATE = 16000
METHODS = ("gengan", "pcmelgan", "psegan")


@pytest.fixture(autouse=True)
def no_local_store(tmp_path, monkeypatch):
    """Only the shipped models can be found."""
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))


def whispered(seconds: float = 1.2, formants=(700, 1220, 2600), seed: int = 0) -> np.ndarray:
    """Whisper-like speech: white noise through three resonators, its loudness modulated at a syllable rate."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = rng.standard_normal(n)
    for freq in formants:
        r = np.exp(-np.pi * 120.0 / RATE)
        out = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / RATE), r * r], out)
    out = out * (0.3 + 0.7 * np.sin(2 * np.pi * 3.0 * t) ** 2)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def loud_cut(seconds: float = 0.12) -> np.ndarray:
    """A short cut from the middle of a loud voiced utterance."""
    return voiced_signal(150.0, 2.0)[RATE // 2 : RATE // 2 + int(seconds * RATE)] * 3.0


def envelope_shape_db(wave: np.ndarray) -> np.ndarray:
    """The long-term WORLD envelope in dB with its mean removed (the spectral shape, not the level)."""
    level = 10 * np.log10(source_filter.analyse(wave, RATE).envelope.mean(axis=0) + 1e-12)
    return level - level.mean()


def shape_distance_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((envelope_shape_db(a) - envelope_shape_db(b)) ** 2)))


def anonymise(method, wave: np.ndarray, target: str) -> np.ndarray:
    return method.process([torch.from_numpy(wave)], [params_for(method, 1, target)])[0].audio.numpy()


@pytest.mark.parametrize("name", METHODS)
def test_whispered_speech_is_transformed_by_each_shipped_model(name):
    wave = whispered()
    assert not (source_filter.analyse(wave, RATE).f0 > 0).any(), "the test signal must have no voiced frame"
    method = create_method(name, MethodOptions(seed=0))
    assert isinstance(method.pipeline, (SourceFilterPipeline, WorldNormPipeline))
    # plain WORLD resynthesis (new noise, same envelope): what the transformation is measured against
    resynthesised = source_filter.resynthesize(source_filter.analyse(wave, RATE)).numpy()
    for target in method.classes[:2]:
        out = anonymise(method, wave, target)
        assert out.shape == wave.shape and np.isfinite(out).all() and np.abs(out).max() > 0.01
        assert abs(np.corrcoef(wave, out)[0, 1]) < 0.5
        if name == "psegan":  # the emotion model keeps the speaker, and moves the energy contour or the envelope
            moved = abs(_energy_range_db(out) / _energy_range_db(resynthesised) - 1) >= 0.15
            assert moved or shape_distance_db(out, resynthesised) >= 1.5, target
        else:  # the gender models move the envelope towards the target
            assert shape_distance_db(out, resynthesised) >= 3.0, target


@pytest.mark.parametrize("name", METHODS)
def test_short_loud_cut_is_transformed(name):
    wave = loud_cut()
    assert not (source_filter.analyse(wave, RATE).f0 > 0).any(), "the cut must be too short for a voiced frame"
    method = create_method(name, MethodOptions(seed=0))
    out = anonymise(method, wave, method.classes[0])
    assert out.shape == wave.shape and np.isfinite(out).all()
    assert abs(np.corrcoef(wave, out)[0, 1]) < 0.5


def test_anonymize_rows_are_ok_and_changed_for_unvoiced_files_failed_with_a_reason_for_a_too_short_one(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "whisper.wav", whispered(0.8), RATE, subtype="PCM_16")
    sf.write(corpus / "cut.wav", loud_cut(), RATE, subtype="PCM_16")
    sf.write(corpus / "tiny.wav", loud_cut(0.005), RATE, subtype="PCM_16")
    out = tmp_path / "out"
    run_anonymize(AnonymizeConfig(corpus=corpus, out=out, method="gengan", score=False, progress=False))
    rows = {r["source_path"]: r for r in read_manifest(out).to_pylist()}
    for name in ("whisper.wav", "cut.wav"):
        assert rows[name]["status"] == "ok", rows[name]["error"]
        original, _ = sf.read(corpus / name, dtype="float32")
        written, _ = sf.read(out / name, dtype="float32")
        assert written.shape == original.shape and abs(np.corrcoef(original, written)[0, 1]) < 0.5
    assert rows["tiny.wav"]["status"] == "failed" and "too short" in rows["tiny.wav"]["error"]
    assert not (out / "tiny.wav").exists()


@pytest.mark.parametrize("name", METHODS)
def test_a_wave_shorter_than_one_analysis_frame_raises_instead_of_passing_through(name):
    """Below the reader's 20 ms floor only through the API; a batch then fails that file (see the worker)."""
    method = create_method(name, MethodOptions(seed=0))
    with pytest.raises(AudioError, match="too short to transform"):
        anonymise(method, loud_cut(0.004), method.classes[0])


def mel_state(**extra) -> dict:
    """A tiny GenGAN checkpoint state with no declared pipeline (a mel-domain model), plus `extra` keys."""
    torch.manual_seed(0)
    config = {"sample_rate": RATE, "channels": [2, 4, 4, 8, 8], "residual": True}
    generator = gengan_generator(config)
    return {
        "method": "gengan",
        "config": config,
        "classes": ["female", "male"],
        "attribute": "gender",
        "models": {"generator": generator.state_dict()},
        **extra,
    }


def test_the_model_declares_its_pipeline():
    assert isinstance(create_method("pcmelgan", MethodOptions()).pipeline, SourceFilterPipeline)
    assert isinstance(create_method("gengan", MethodOptions()).pipeline, WorldNormPipeline)
    # a state as the trainers write it, with keys the method does not read
    state = mel_state(format_version=2, trainer_config={"epochs": 1}, data_fingerprint="abc")
    method = method_class("gengan").from_state(state, MethodOptions(seed=1))
    assert isinstance(method.pipeline, MelPipeline) and method.config()["vocoder"] == "phase"
    wave = voiced_signal(150.0, 0.6)
    out = method.process([torch.from_numpy(wave)], [{"noise_seed": 2}])[0].audio
    assert out.shape == wave.shape and torch.isfinite(out).all()
    with pytest.raises(AudioError, match="too short to transform"):
        method.process([torch.from_numpy(wave[:100])], [{"noise_seed": 2}])
    unknown = mel_state()
    unknown["config"]["synthesis"] = "formant_vocoder"
    with pytest.raises(AnoncliError, match="'formant_vocoder'"):
        method_class("gengan").from_state(unknown, MethodOptions())
    top_level = mel_state(synthesis="source_filter")  # declared beside config, as a model card does
    with pytest.raises(AnoncliError, match="without prosody_bounds, prosody_hidden, models.prosody"):
        method_class("gengan").from_state(top_level, MethodOptions())
    top_level["config"]["synthesis"] = "mel"
    with pytest.raises(AnoncliError, match="two synthesis pipelines"):
        method_class("gengan").from_state(top_level, MethodOptions())
