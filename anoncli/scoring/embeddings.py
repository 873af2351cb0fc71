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
    """What every speaker-embedding backend offers: a `name` and `embed`."""

    name: str

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        """Speaker embeddings of 16 kHz float32 mono waves: (len(waves), D) float32, each row L2-normalised."""
        ...


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# resemblyzer's hyper-parameters (resemblyzer/hparams.py) and inference settings (VoiceEncoder.embed_utterance).
PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames per partial utterance
PARTIAL_RATE = 1.3  # partials per second
MIN_COVERAGE = 0.75  # a last partial needs this share of real frames
NORM_TARGET_DBFS = -30.0
VAD_WINDOW = 480  # 30 ms at 16 kHz
VAD_AVERAGE_WIDTH = 8
VAD_MAX_SILENCE = 6


def _resemblyzer_weights():
    """resemblyzer's bundled GE2E weights (pretrained.pt), located without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec("resemblyzer")
    path = Path(spec.origin).parent / "pretrained.pt" if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise AnoncliError("speaker embeddings need the resemblyzer package and its bundled pretrained.pt")
    return path


def _ge2e(device: str):
    """resemblyzer's VoiceEncoder network (3-layer LSTM 40 -> 256, linear 256, ReLU) with its weights."""
    import torch
    from torch import nn

    class GE2E(nn.Module):
        """resemblyzer's GE2E speaker encoder: mel frames (B, frames, 40) -> L2-normalised embeddings (B, 256)."""

        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)

        def forward(self, mels):
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True)

    model = GE2E()
    state = torch.load(_resemblyzer_weights(), map_location="cpu", weights_only=True)["model_state"]
    model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))})
    return model.to(device).eval()


def _partial_starts(n_samples: int) -> list[int]:
    """First mel frame of each partial (resemblyzer's `compute_partial_slices`, rate 1.3, coverage 0.75)."""
    n_frames = int(np.ceil((n_samples + 1) / 160))
    step = int(np.round((EMBED_RATE / PARTIAL_RATE) / 160))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * 160) / (PARTIAL_FRAMES * 160)
    return starts[:-1] if coverage < MIN_COVERAGE and len(starts) > 1 else starts


def _trim_long_silences(wave: np.ndarray) -> np.ndarray:
    """resemblyzer's `trim_long_silences` (webrtcvad mode 3 on 30 ms windows, smoothed, dilated), vectorised."""
    import _webrtcvad  # webrtcvad's extension; its Python wrapper only adds a slow pkg_resources import

    wave = wave[: len(wave) - len(wave) % VAD_WINDOW]
    pcm = np.round(wave * 32767).astype("<i2").tobytes()
    vad = _webrtcvad.create()
    _webrtcvad.init(vad)
    _webrtcvad.set_mode(vad, 3)
    flags = np.array(
        [
            _webrtcvad.process(vad, EMBED_RATE, pcm[2 * start : 2 * (start + VAD_WINDOW)], VAD_WINDOW)
            for start in range(0, len(wave), VAD_WINDOW)
        ],
        dtype=np.float64,
    )
    if not flags.size:
        return wave
    padded = np.concatenate([np.zeros((VAD_AVERAGE_WIDTH - 1) // 2), flags, np.zeros(VAD_AVERAGE_WIDTH // 2)])
    total = np.cumsum(padded)
    total[VAD_AVERAGE_WIDTH:] = total[VAD_AVERAGE_WIDTH:] - total[:-VAD_AVERAGE_WIDTH]
    mask = np.round(total[VAD_AVERAGE_WIDTH - 1 :] / VAD_AVERAGE_WIDTH).astype(bool)
    # binary dilation with a centred structure of VAD_MAX_SILENCE + 1 ones (scipy.ndimage's, zero border);
    # the centred slice of the full convolution, as mode="same" returns the longer input's length (a wave
    # of fewer windows than the structure got a mask longer than itself)
    dilated = np.convolve(mask.astype(np.int32), np.ones(VAD_MAX_SILENCE + 1, np.int32), mode="full")
    mask = dilated[VAD_MAX_SILENCE // 2 : VAD_MAX_SILENCE // 2 + len(mask)] > 0
    return wave[np.repeat(mask, VAD_WINDOW)]


class ResemblyzerBackend:
    """resemblyzer's bundled GE2E LSTM encoder, batched across utterances.

    The same embedding as resemblyzer's `preprocess_wav` + `embed_utterance`
    (volume normalisation up to -30 dBFS, VAD trimming of long pauses,
    1.6-s partials at 1.3 per second, mean of the partial embeddings,
    L2-normalised), on waves we already resampled, with the partials of many
    utterances in one forward, and without importing the resemblyzer package
    (it imports librosa and webrtcvad's pkg_resources, ~1.5 s of CPU per
    worker): the network is rebuilt here and loads resemblyzer's weights.
    """

    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        self.encoder = _ge2e(device)
        self.device = device

    @staticmethod
    def _prepare(wave: np.ndarray) -> np.ndarray:
        if not np.any(wave):
            return wave
        rms = np.sqrt(np.mean((wave.astype(np.float64) * 32767) ** 2))
        change_db = NORM_TARGET_DBFS - 20 * np.log10(rms / 32767)
        if change_db > 0:  # resemblyzer normalises with increase_only=True
            wave = (wave * 10 ** (change_db / 20)).astype(np.float32)
        if len(wave) < EMBED_RATE // 2:  # trimming could only shorten it below the floor below: embed it whole
            return wave
        trimmed = _trim_long_silences(wave)
        # The VAD can drop everything from a synthetic or very quiet file; keep the raw wave then.
        return trimmed if len(trimmed) >= EMBED_RATE // 2 else wave

    def _partials(self, wave: np.ndarray) -> np.ndarray:
        from anoncli.scoring.features import mel_power

        starts = _partial_starts(len(wave))
        needed = (starts[-1] + PARTIAL_FRAMES) * 160
        if needed >= len(wave):
            wave = np.pad(wave, (0, needed - len(wave)))
        mel = mel_power(wave)  # resemblyzer's own front end (25 ms / 10 ms, 40 mels), faster
        return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        """Embeddings of 16 kHz float32 mono waves, shape (len(waves), 256), L2-normalised float32.

        Returns shape (0, 256) for no waves. A wave shorter than 0.5 s is embedded
        whole, without VAD trimming (callers that want no embedding of a too short
        wave check `signal_metrics.MIN_SECONDS` first). Raises AnoncliError (at
        construction) when resemblyzer's bundled weights are missing.
        """
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
                    batch = torch.from_numpy(stacked[start : start + PARTIALS_PER_BATCH]).to(self.device)
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
            raise AnoncliError(
                f"--asv-model {folder}: no such folder (a local model folder is required; nothing is downloaded)"
            )
        if not (folder / "hyperparams.yaml").is_file():
            raise AnoncliError(
                f"--asv-model {folder}: no hyperparams.yaml (expected a speechbrain model folder or an `anoncli train --method asv` run)"
            )
        # A path speechbrain cannot find becomes a hub id; make sure that can never reach the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from speechbrain.inference.speaker import EncoderClassifier

        self.model = EncoderClassifier.from_hparams(
            source=str(folder.resolve()), savedir=str(folder.resolve()), run_opts={"device": device}
        )
        self.name = f"speechbrain:{folder.name}"

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        """Embeddings of 16 kHz float32 mono waves, one at a time, shape (len(waves), D), L2-normalised float32.

        D is the model's embedding size (192 for speechbrain's ECAPA-TDNN).
        """
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
        self.model = ECAPA_TDNN(config["n_mels"], lin_neurons=config["lin_neurons"], channels=config["channels"]).to(
            device
        )
        self.device = device

    def features(self, waves):
        """Fbank features with the per-utterance mean removed: (B, samples) at 16 kHz -> (B, frames, n_mels)."""
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
        """Embeddings of 16 kHz float32 mono waves, one at a time, shape (len(waves), lin_neurons), L2-normalised float32."""
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
        raise AnoncliError(
            f"--asv-model {folder}: no such folder (give 'resemblyzer', a speechbrain model folder or an anoncli ASV run)"
        )
    if (folder / "model.json").is_file():
        return EcapaBackend(folder, device)
    return SpeechBrainFolderBackend(folder, device)
