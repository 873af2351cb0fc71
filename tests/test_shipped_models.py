"""The models shipped in the package: present, complete, loadable without a local store, and doing what they claim.

Synthetic audio only: a harmonic "voice" with a formant-like envelope, a
slow pitch glide and a syllable-rate loudness contour.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anoncli import modelstore
from anoncli.methods import MethodOptions, create_method
from anoncli.scoring.signal_metrics import f0_track

RATE = 16000
PRETRAINED = Path(modelstore.__file__).resolve().parent / "pretrained"
# the representation-level models (siamese, rdalm) are tested in test_shipped_features_models.py, the fitted
# statistics of world_norm (no networks, no validation figures) in test_world_norm.py, world_phone (a phone
# classifier, an inventory and those statistics) in test_world_phone.py
FEATURE_METHODS = ("siamese", "rdalm", "world_norm", "world_phone")
SHIPPED = (
    sorted(
        p.name for p in PRETRAINED.iterdir() if (p / "model.safetensors").is_file() and p.name not in FEATURE_METHODS
    )
    if PRETRAINED.is_dir()
    else []
)
GENDER = [m for m in ("gengan", "pcmelgan") if m in SHIPPED]
MAX_BYTES = 20 * 1024 * 1024


def voiced_signal(f0: float = 150.0, seconds: float = 2.5, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding F0 shaped by three formant peaks, loudness modulated at 4 Hz, light noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    contour = f0 * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(contour) / RATE
    wave = np.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        freq = k * f0
        gain = sum(np.exp(-(((freq - fc) / bw) ** 2)) for fc, bw in ((600, 150), (1500, 250), (2600, 300))) + 0.02
        wave += gain / k**0.5 * np.sin(k * phase)
    loudness = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    wave = wave * loudness + 0.002 * rng.standard_normal(len(t))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture
def no_local_store(tmp_path, monkeypatch):
    """An empty local model store, as on a fresh machine: only the shipped models can be found."""
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))


def params_for(method, seed: int, target: str) -> dict:
    """The utterance parameters of `seed` with the target class `target`: a source-filter model takes the
    target as given; a world_norm model draws it with its pseudo-speaker, so the first seed from `seed` on
    that draws `target` is used."""
    if getattr(method.pipeline, "sampler", None) is None:
        return {**method.pipeline.utterance_params(method.network_params(seed), seed), "target": target}
    for candidate in range(seed, seed + 100):
        params = method.pipeline.utterance_params(method.network_params(candidate), candidate)
        if params.get("target") == target:
            return params
    raise AssertionError(f"no seed draws {target}")


def run(method, wave: np.ndarray, params: dict) -> np.ndarray:
    audio = method.process([torch.from_numpy(wave)], [params])[0].audio
    return np.asarray(audio.numpy() if isinstance(audio, torch.Tensor) else audio, dtype=np.float32)


def median_f0(wave: np.ndarray) -> float:
    track = f0_track(wave, RATE)
    return float(np.median(track[track > 0]))


def test_psegan_is_shipped():
    assert "psegan" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_card_is_complete(name):
    folder = PRETRAINED / name
    weights = folder / "model.safetensors"
    assert weights.stat().st_size < MAX_BYTES
    card = json.loads((folder / "card.json").read_text())
    assert card["method"] == name
    for key in ("corpus", "licence", "train_speakers", "excluded_speakers"):
        assert card["data"][key], key
    assert card["config"] and card["command"].startswith("anoncli train")
    assert isinstance(card["seed"], int)
    assert "val_stoi" in card["validation"]
    assert card["model"]["classes"] and card["model"]["config"]["synthesis"] in ("source_filter", "world_norm")
    assert card["heldout"], "held-out evaluation figures"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_runs_without_a_local_store(name, no_local_store):
    method = create_method(name, MethodOptions(seed=3))
    assert str(method.checkpoint_path).endswith("model.safetensors")
    assert method.config()["model_sha256"] == modelstore.file_sha256(method.checkpoint_path)
    listed = {(m["method"], m["source"]): m for m in modelstore.list_models()}
    assert listed[(name, "shipped")]["sha256"] == method.config()["model_sha256"]
    wave = voiced_signal()
    out = run(method, wave, params_for(method, 5, method.classes[0]))
    assert out.shape == wave.shape and np.isfinite(out).all() and np.abs(out).max() > 0.01


@pytest.mark.parametrize("name", GENDER)
def test_gender_model_moves_f0_towards_the_target(name, no_local_store):
    """A low (male-like) voice rises >= 25 % for a female target, a high (female-like) one falls >= 20 % for
    a male target, and on a voice between the classes the female target ends well above the male one."""
    method = create_method(name, MethodOptions(seed=0))

    def moved(f0: float, target: str) -> tuple[float, float]:
        wave = voiced_signal(f0)
        after = np.median([median_f0(run(method, wave, params_for(method, 10 * s, target))) for s in range(3)])
        return median_f0(wave), float(after)

    before, female = moved(115.0, "female")
    assert female >= 1.25 * before, (before, female)
    before, male = moved(210.0, "male")
    assert male <= 0.80 * before, (before, male)
    _, female = moved(144.0, "female")
    _, male = moved(144.0, "male")
    assert female >= 1.3 * male, (female, male)


def _log_f0_range(wave: np.ndarray) -> float:
    track = f0_track(wave, RATE)
    log_f0 = np.log(track[track > 0])
    return float(np.percentile(log_f0, 90) - np.percentile(log_f0, 10))


def _energy_range_db(wave: np.ndarray) -> float:
    frames = wave[: len(wave) // 160 * 160].reshape(-1, 160).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    level = level[level > level.max() - 40]
    return float(np.percentile(level, 90) - np.percentile(level, 10))


def test_psegan_changes_f0_range_or_energy_contour(no_local_store):
    method = create_method("psegan", MethodOptions(seed=0))
    wave = voiced_signal(180.0)
    f0_before, energy_before = _log_f0_range(wave), _energy_range_db(wave)
    changes = []
    for target in method.classes:
        out = run(method, wave, params_for(method, 1, target))
        changes.append(max(abs(_log_f0_range(out) / f0_before - 1), abs(_energy_range_db(out) / energy_before - 1)))
    # most targets change the F0 range or the energy range of the utterance by at least 15 %
    assert np.median(changes) >= 0.15, changes


def test_lookup_order_checkpoint_then_local_store_then_shipped(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONCLI_MODELS", str(tmp_path / "store"))
    assert modelstore.find("psegan") == modelstore.shipped_model("psegan")
    local = tmp_path / "store" / "psegan" / modelstore.MODEL_FILE
    local.parent.mkdir(parents=True)
    torch.save({"method": "psegan"}, local)
    assert modelstore.find("psegan") == local
    given = tmp_path / "given.pt"
    torch.save({"method": "psegan"}, given)
    assert modelstore.find("psegan", given) == given
