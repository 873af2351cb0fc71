"""Speaker-embedding backends for ASV, linkability and the attribute attackers.

All backends take 16 kHz float32 mono waves and return L2-normalised vectors,
so a dot product is the cosine score. Nothing here touches the network:
resemblyzer ships its weights inside the package, a speechbrain model must be a
local folder, and our own ECAPA is a run folder written by `anoncli train`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from anoncli.errors import AnoncliError, InputError

EMBED_RATE = 16000
PARTIALS_PER_BATCH = 256
ECAPA_MODEL_KIND = "anoncli-asv-ecapa"  # model.json "kind" of an `anoncli train --method asv` run


class EmbeddingBackend(Protocol):
    name: str

    def embed(self, waves: list[np.ndarray]) -> np.ndarray: ...


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class ResemblyzerBackend:
    """resemblyzer's bundled GE2E LSTM encoder, batched across utterances.

    Same preprocessing as resemblyzer's own `preprocess_wav` (volume
    normalisation, VAD trimming of long pauses), but on waves we already
    resampled, and with the partial windows of many utterances in one forward.
    """

    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device=device, verbose=False)
        self.device = device

    @staticmethod
    def _prepare(wave: np.ndarray) -> np.ndarray:
        from resemblyzer.audio import normalize_volume, trim_long_silences
        from resemblyzer.hparams import audio_norm_target_dBFS

        if not np.any(wave):
            return wave
        wave = normalize_volume(wave, audio_norm_target_dBFS, increase_only=True)
        trimmed = trim_long_silences(wave)
        # The VAD can drop everything from a synthetic or very quiet file; keep the raw wave then.
        return trimmed if len(trimmed) >= EMBED_RATE // 2 else wave

    def _partials(self, wave: np.ndarray) -> np.ndarray:
        from resemblyzer.voice_encoder import VoiceEncoder

        from anoncli.scoring.features import mel_power

        wave_slices, mel_slices = VoiceEncoder.compute_partial_slices(len(wave), rate=1.3, min_coverage=0.75)
        needed = wave_slices[-1].stop
        if needed >= len(wave):
            wave = np.pad(wave, (0, needed - len(wave)))
        mel = mel_power(wave)  # resemblyzer's own front end (25 ms / 10 ms, 40 mels), faster
        return np.stack([mel[s] for s in mel_slices])

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        import torch

        partials, owners = [], []
        for index, wave in enumerate(waves):
            p = self._partials(self._prepare(np.asarray(wave, dtype=np.float32)))
            partials.append(p)
            owners.extend([index] * len(p))
        if not partials:
            return np.zeros((0, 256), dtype=np.float32)
        stacked = np.concatenate(partials)
        outputs = []
        # One intra-op thread: on a busy 2-core machine torch's LSTM with 2 threads
        # measured 13x slower (21 s vs 1.6 s for 128 windows); parallelism belongs to workers.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                for start in range(0, len(stacked), PARTIALS_PER_BATCH):
                    batch = torch.from_numpy(stacked[start:start + PARTIALS_PER_BATCH]).to(self.device)
                    outputs.append(self.encoder(batch).cpu().numpy())
        finally:
            torch.set_num_threads(threads)
        partial_embeds = np.concatenate(outputs)
        owners = np.asarray(owners)
        result = np.stack([partial_embeds[owners == i].mean(axis=0) for i in range(len(waves))])
        return _l2(result).astype(np.float32)


class SpeechBrainFolderBackend:
    """A speechbrain `EncoderClassifier` loaded from a local folder (hyperparams.yaml + checkpoints)."""

    name = "speechbrain"

    def __init__(self, folder: Path, device: str = "cpu"):
        folder = Path(folder)
        if not folder.is_dir():
            raise AnoncliError(f"--asv-model {folder}: no such folder (a local model folder is required; nothing is downloaded)")
        if not (folder / "hyperparams.yaml").is_file():
            raise AnoncliError(f"--asv-model {folder}: no hyperparams.yaml (expected a speechbrain model folder or an `anoncli train --method asv` run)")
        # A path speechbrain cannot find becomes a hub id; make sure that can never reach the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from speechbrain.inference.speaker import EncoderClassifier

        self.model = EncoderClassifier.from_hparams(source=str(folder.resolve()), savedir=str(folder.resolve()), run_opts={"device": device})
        self.name = f"speechbrain:{folder.name}"

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        import torch

        results = []
        with torch.inference_mode():
            for wave in waves:  # one at a time: no padding effects, memory stays flat
                emb = self.model.encode_batch(torch.from_numpy(np.asarray(wave, dtype=np.float32))[None])
                results.append(emb.reshape(-1).cpu().numpy())
        return _l2(np.stack(results)).astype(np.float32)


class SpeakerEncoder:
    """Fbank → sentence mean normalisation → ECAPA-TDNN → L2-normalised embedding."""

    def __init__(self, config: dict, device: str = "cpu"):
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        self.fbank = Fbank(n_mels=config["n_mels"], sample_rate=EMBED_RATE)
        self.model = ECAPA_TDNN(config["n_mels"], lin_neurons=config["lin_neurons"], channels=config["channels"]).to(device)
        self.device = device

    def features(self, waves):
        feats = self.fbank(waves)
        return feats - feats.mean(dim=1, keepdim=True)

    def __call__(self, waves):
        return self.model(self.features(waves.to(self.device))).squeeze(1)


class EcapaBackend:
    """Embedding backend for `evaluate --asv-model RUN` (a finished `anoncli train --method asv` run)."""

    def __init__(self, folder: Path, device: str = "cpu"):
        import torch

        folder = Path(folder)
        config = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        if config.get("kind") != ECAPA_MODEL_KIND:
            raise InputError(f"--asv-model {folder}: model.json is not an ASV encoder (kind {config.get('kind')!r})")
        if not (folder / "model.pt").is_file():
            raise InputError(f"--asv-model {folder}: training has not finished (no model.pt)")
        self.encoder = SpeakerEncoder(config, device)
        state = torch.load(folder / "model.pt", map_location=device, weights_only=True)
        self.encoder.model.load_state_dict(state)
        self.encoder.model.eval()
        self.name = f"ecapa:{folder.name}"

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        import torch

        results = []
        with torch.inference_mode():
            for wave in waves:
                x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
                results.append(self.encoder(x)[0].cpu().numpy())
        return _l2(np.stack(results)).astype(np.float32)


def load_backend(asv_model: str | Path | None, device: str = "cpu") -> EmbeddingBackend:
    """`None`/"resemblyzer" -> bundled encoder; an `anoncli train --method asv` run; a speechbrain folder."""
    if asv_model is None or str(asv_model) == "resemblyzer":
        return ResemblyzerBackend(device)
    folder = Path(asv_model)
    if not folder.is_dir():
        raise AnoncliError(f"--asv-model {folder}: no such folder (give 'resemblyzer', a speechbrain model folder or an anoncli ASV run)")
    if (folder / "model.json").is_file():
        return EcapaBackend(folder, device)
    return SpeechBrainFolderBackend(folder, device)
