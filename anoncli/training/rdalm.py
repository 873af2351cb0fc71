"""`anoncli train --method rdalm`: speech-removal mask, then event features trained against a speech adversary.

Stage (a) trains the separation U-Net with L1 between mask × mixture magnitude
and the clean event magnitude (the `clean_event` column of the mixture
corpus, see `anoncli.mixtures`), then freezes it. As at anonymization, the
U-Net reads each mixture's magnitude scaled to the reference level
(`rdalm_nets.level_gain`) and its mask multiplies the unscaled mixture, in
both stages, so a model trained here is as level-invariant as the method
applies it. Stage (b) trains the
feature extractor + event classifier on the log-mel of the masked magnitude;
a speech-presence discriminator sits behind a gradient-reversal layer whose
weight is 0 for `warmup_epochs`, then ramps up over `ramp_epochs`. Every
`refresh_every` epochs a fresh discriminator is trained on the frozen
features and its weights replace the adversary's (RDAL-M's periodic reset).
`adversary_hidden` sets the adversary's layers: the paper's 48-32-16, or
256 with `adversary_dropout` 0.3, the family of the evaluation attacker.
`disc_steps` extra adversary updates per batch (on detached features) and
`disc_standardize` (batch-normalised adversary input) are experiments, off by
default (docs/results.md). `feature_gain` makes the extractor read the masked
magnitude at the reference level too (a level-free embedding); `augment`
shifts each training log-mel in time (circularly) and blanks one band of
mel channels and one span of frames (SpecAugment, Park et al., Interspeech
2019) in stage (b). `--param adversary=false` trains the non-private baseline (same schedule,
weight always 0). `--param unet_from=RUN` reuses another run's stage (a).
Both stages are epochs of one run of the training loop (`anoncli.training.loop.fit`:
`unet_epochs`, then `epochs`), so a killed run resumes in either stage.

Only items whose `split` label is not "test" are used; a `val_fraction` of
the training event sources (column `event_source_id`) is held out for
validation figures. The report (model.json `held_out`, and `validation`) gives
event accuracy (also per events corpus, column `group`, by default
`event_corpus`), the speech attacker retrained from scratch on the frozen
embeddings of the held-out mixtures (cross-validated: the figure `anoncli
evaluate` reports) and the mask's SDR. The private label is `speech` (yes/no)
or the older `speech_present` (1/0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anoncli.audio import read_audio, resample
from anoncli.errors import AnoncliError
from anoncli.models.rdalm_nets import RdalmPipeline, SpeechDiscriminator, grad_reverse, grl_weight, level_gain
from anoncli.modelstore import find, load_model
from anoncli.progress import progress_bar
from anoncli.scoring.probe import cross_validated_probe
from anoncli.scoring.signal_metrics import sdr_db
from anoncli.training.loop import FitResult, TrainConfig, Trainer, data_fingerprint


@dataclass
class RdalmConfig(TrainConfig):
    """RDAL-M settings. Signal: `sample_rate`, STFT `n_fft` and `hop`, items clipped to `clip_s` seconds.
    Stage (a): the U-Net mask (`unet_width` × the paper's channels) for `unet_epochs` epochs, or reused
    from another run (`unet_from`, a run folder or checkpoint). Stage (b): the extractor (`extractor_width`,
    an `embedding`-d output) and event classifier for `epochs` epochs with Adam `lr`, against the
    speech adversary (`adversary`; its layers `adversary_hidden`, `adversary_dropout`,
    `disc_standardize`; `disc_steps` extra updates per batch) behind a gradient reversal of weight 0
    for `warmup_epochs`, ramped to `max_grl_weight` over `ramp_epochs`; every `refresh_every` epochs a
    fresh adversary trained `refresh_epochs` epochs on the frozen features replaces it. `utility` and
    `attribute` are the event and speech label columns (`--utility`, `--attribute`); `val_fraction`
    of the training event sources is held out for the validation figures. `feature_gain`: the extractor
    reads the masked magnitude brought to the reference level; `augment`: time shift and SpecAugment
    masks on stage (b)'s log-mels; `group`: the label column the held-out event accuracy is also given per
    value of (the events corpus)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 128
    clip_s: float = 2.0
    unet_width: float = 0.25
    extractor_width: float = 0.25
    embedding: int = 64
    unet_epochs: int = 12
    unet_from: str = ""
    lr: float = 1e-3
    warmup_epochs: int = 5
    ramp_epochs: int = 10
    max_grl_weight: float = 1.0
    refresh_every: int = 10
    refresh_epochs: int = 30
    adversary: bool = True
    adversary_hidden: list[int] = field(default_factory=lambda: [48, 32, 16])
    adversary_dropout: float = 0.0
    disc_steps: int = 0
    disc_standardize: bool = False
    utility: str = "event"
    attribute: str = "speech"
    val_fraction: float = 0.0
    feature_gain: bool = False
    augment: bool = False
    group: str = "event_corpus"

    def check(self) -> None:
        """Raise AnoncliError for a reset period below 1."""
        super().check()
        if self.refresh_every < 1:
            raise AnoncliError(f"--param refresh_every={self.refresh_every}: expected at least 1")


PRESETS = {
    # CPU-sized: quarter widths, epochs and reset period P scaled down ~6x from the paper.
    "quick": RdalmConfig(epochs=40, batch_size=16, threads=1, amp=False),
    # The paper's sizes: full widths, GRL weight 0 for 30 epochs, reset every P = 60 epochs.
    "full": RdalmConfig(
        n_fft=1024,
        hop=256,
        clip_s=4.0,
        unet_width=1.0,
        extractor_width=1.0,
        unet_epochs=100,
        epochs=300,
        warmup_epochs=30,
        ramp_epochs=30,
        refresh_every=60,
        refresh_epochs=100,
        batch_size=32,
        threads=0,
        amp=False,
    ),
}
# the settings that describe the networks and labels (the checkpoint's `config`, what inference reads)
MODEL_KEYS = (
    "sample_rate",
    "n_fft",
    "hop",
    "clip_s",
    "unet_width",
    "extractor_width",
    "embedding",
    "adversary",
    "adversary_hidden",
    "adversary_dropout",
    "disc_standardize",
    "utility",
    "attribute",
    "seed",
    "feature_gain",
)


def _fit_length(wave: torch.Tensor, n: int) -> torch.Tensor:
    return wave[:n] if len(wave) >= n else F.pad(wave, (0, n - len(wave)))


def _load(path: Path, sr: int) -> torch.Tensor:
    audio = read_audio(path)
    return resample(torch.from_numpy(audio.samples), audio.sample_rate, sr)


def load_items(corpus_root, utterances, config, need_event: bool = True):
    """Mixture waves, clean-event waves, event labels and speech-presence labels, all clipped to clip_s."""
    n = int(config.clip_s * config.sample_rate)
    mixes, events = [], []
    for utt in progress_bar(utterances, desc="reading mixtures", leave=False, enabled=None):
        mixes.append(_fit_length(_load(utt.path, config.sample_rate), n))
        if need_event:
            rel = utt.labels.get("clean_event")
            if not rel:
                raise AnoncliError(
                    f"{utt.rel_path}: no clean_event label (make the corpus with anoncli.tools.make_mixtures)"
                )
            events.append(_fit_length(_load(Path(corpus_root) / rel, config.sample_rate), n))
    return torch.stack(mixes), (torch.stack(events) if need_event else None)


def speech_labels(utterances, column: str = "speech") -> np.ndarray:
    """(N,) float 1/0 speech presence from `column` ("yes"/"no", 1/0, true/false); falls back to the
    older `speech_present` column."""
    values = [str(u.labels.get(column) or u.labels.get("speech_present") or "0").strip().lower() for u in utterances]
    return np.asarray([v in ("1", "true", "yes") for v in values], dtype=np.float32)


def level_gains(mixes: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(N,) gains that bring each mixture (N, samples) to the level the U-Net reads (`rdalm_nets.level_gain`):
    training sees the mixtures as anonymization does."""
    return torch.stack([level_gain(wave, sample_rate) for wave in mixes])


def make_discriminator(config: RdalmConfig) -> SpeechDiscriminator:
    """The speech-presence adversary configured by `embedding`, `disc_standardize`, `adversary_hidden` and `adversary_dropout`."""
    return SpeechDiscriminator(
        config.embedding,
        config.disc_standardize,
        tuple(int(h) for h in config.adversary_hidden),
        float(config.adversary_dropout),
    )


def validation_split(utterances, fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a `fraction` of the event sources (event_source_id, else event_source) held out."""
    if fraction <= 0:
        return list(utterances), []
    key = [str(u.labels.get("event_source_id") or u.labels.get("event_source") or u.utt_id) for u in utterances]
    sources = sorted(set(key))
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(sources)[: max(1, int(round(fraction * len(sources))))].tolist())
    return (
        [u for u, k in zip(utterances, key) if k not in chosen],
        [u for u, k in zip(utterances, key) if k in chosen],
    )


class RdalmTrainer(Trainer):
    """`anoncli train --method rdalm`: stage (a) the separation mask for `unet_epochs` epochs, then stage (b)
    event features against a speech adversary for `epochs` more (one run of the loop; the epoch number
    tells the stages apart). The card and the summary give the held-out (split "test") figures and the
    validation sources' (`_report`). Raises AnoncliError for too few labelled training mixtures."""

    method = "rdalm"
    config_class = RdalmConfig
    presets = PRESETS
    selection = ("val_score", "max")  # no per-epoch validation: every epoch is the newest best

    @property
    def mask_epochs(self) -> int:
        """Epochs of stage (a): none when the mask comes from another run (`unet_from`)."""
        return 0 if self.config.unet_from else self.config.unet_epochs

    def total_epochs(self) -> int:
        return self.mask_epochs + self.config.epochs

    def setup(self) -> None:
        c = self.config
        corpus = self.options.open_corpus()
        self.corpus_root = corpus.root
        all_utts = [u for u in corpus.utterances if u.labels.get(c.utility)]
        self.data_fingerprint = data_fingerprint(all_utts)
        train_utts = [u for u in all_utts if (u.labels.get("split") or "train") != "test"]
        self.test_utts = [u for u in all_utts if (u.labels.get("split") or "train") == "test"]
        self.train_utts, self.val_utts = validation_split(train_utts, c.val_fraction, c.seed)
        if len(self.train_utts) < 4:
            raise AnoncliError(
                f"{self.options.corpus}: too few training mixtures with a {c.utility!r} label ({len(self.train_utts)})"
            )
        self.classes = sorted({u.labels[c.utility] for u in self.train_utts})
        self.y_event = torch.tensor([self.classes.index(u.labels[c.utility]) for u in self.train_utts])
        self.y_speech = torch.from_numpy(speech_labels(self.train_utts, c.attribute))
        self.pipe = RdalmPipeline(
            c.sample_rate,
            c.n_fft,
            c.hop,
            c.unet_width,
            c.extractor_width,
            c.embedding,
            len(self.classes),
            c.feature_gain,
        )
        self.disc = make_discriminator(c)
        self.opts = {
            "unet": torch.optim.Adam(self.pipe.unet.parameters(), lr=c.lr),
            "features": torch.optim.Adam(
                list(self.pipe.extractor.parameters()) + list(self.pipe.classifier.parameters()), lr=c.lr
            ),
            "disc": torch.optim.Adam(self.disc.parameters(), lr=c.lr),
        }
        self.magnitudes = None  # stage (a): (mixture, clean event) STFT magnitudes and the mixtures' level gains
        self.inputs = None  # stage (b): log-mels of the frozen mask's output
        self.weight, self.reset = 0.0, False

    def start(self) -> None:
        """With `unet_from`: stage (a) is the other run's mask."""
        if self.config.unet_from:
            other = load_model(find("rdalm", self.config.unet_from), self.device)
            pipeline = other["models"].get("pipeline") or {}
            self.pipe.unet.load_state_dict({k[5:]: v for k, v in pipeline.items() if k.startswith("unet.")})

    def modules(self):
        return {"pipeline": self.pipe, "disc": self.disc}

    def optimizers(self):
        return self.opts

    def inference_modules(self):
        return ["pipeline"]

    def model_info(self) -> dict:
        return {
            "config": {key: getattr(self.config, key) for key in MODEL_KEYS},
            "classes": self.classes,
            "attribute": self.config.attribute,
        }

    def batches(self, epoch: int):
        c, bs = self.config, self.config.batch_size
        if epoch <= self.mask_epochs:
            if self.magnitudes is None:
                waves = load_items(self.corpus_root, self.train_utts, c)
                with torch.no_grad():  # (mixture, event) magnitudes, kept on the CPU
                    self.magnitudes = tuple(
                        torch.cat(
                            [
                                self.pipe.spec.stft(w[s : s + bs].to(self.device)).abs().cpu()
                                for s in range(0, len(w), bs)
                            ]
                        ).unsqueeze(1)
                        for w in waves
                    )
                self.magnitudes += (level_gains(waves[0], c.sample_rate),)
            order = torch.randperm(len(self.train_utts), generator=self.rng)
            return [("mask", order[s : s + bs]) for s in range(0, len(order), bs)]
        if self.inputs is None:  # the frozen mask's log-mels, computed once
            mixes, _ = load_items(self.corpus_root, self.train_utts, c, need_event=False)
            self.pipe.unet.eval()
            with torch.no_grad():
                gains = level_gains(mixes, c.sample_rate)
                self.inputs = torch.cat(
                    [
                        self.pipe.features(mixes[s : s + bs].to(self.device), gains[s : s + bs].to(self.device)).cpu()
                        for s in range(0, len(mixes), bs)
                    ]
                )
            self.magnitudes = None
        index = epoch - self.mask_epochs - 1  # stage (b)'s epoch, from 0
        self.reset = bool(c.adversary and index > 0 and index % c.refresh_every == 0)
        if self.reset:  # RDAL-M's periodic reset: a fresh adversary trained on the frozen features
            self.disc.load_state_dict(
                _fresh_discriminator(self.pipe, self.inputs, self.y_speech, c, self.device, self.rng).state_dict()
            )
            self.opts["disc"] = torch.optim.Adam(self.disc.parameters(), lr=c.lr)
            self.pipe.extractor.train()
        self.weight = grl_weight(index, c.warmup_epochs, c.ramp_epochs, c.max_grl_weight) if c.adversary else 0.0
        order = torch.randperm(len(self.inputs), generator=self.rng)
        # batch norm needs two items: a lone leftover item waits for the next epoch
        return [("features", order[s : s + bs]) for s in range(0, len(order), bs) if len(order[s : s + bs]) >= 2]

    def train_step(self, batch) -> dict[str, float]:
        stage, idx = batch
        if stage == "mask":
            m, e, gain = (part[idx].to(self.device) for part in self.magnitudes)
            # the U-Net reads the mixture at the reference level, as at anonymization; its mask scales the mixture
            loss = F.l1_loss(self.pipe.unet(m * gain.reshape(-1, 1, 1, 1)) * m, e)
            self.optimize("unet", loss)
            return {"l1": loss.item()}
        x, ye, ys = (
            (augment(self.inputs[idx], self.rng) if self.config.augment else self.inputs[idx]).to(self.device),
            self.y_event[idx].to(self.device),
            self.y_speech[idx].to(self.device),
        )
        z = self.pipe.extractor(x)
        # extra adversary updates on detached features keep it ahead of the extractor
        for _ in range(self.config.disc_steps if self.weight > 0 else 0):
            self.optimize("disc", F.binary_cross_entropy_with_logits(self.disc(z.detach()), ys))
        logits = self.pipe.classifier(z)
        event_loss = F.cross_entropy(logits, ye)
        speech_logit = self.disc(grad_reverse(z, self.weight))
        speech_loss = F.binary_cross_entropy_with_logits(speech_logit, ys)
        self.optimize(("features", "disc"), event_loss + speech_loss)
        return {
            "event_loss": event_loss.item(),
            "speech_loss": speech_loss.item(),
            "event_acc": float((logits.argmax(1) == ye).float().mean()),
            "speech_acc": float(((speech_logit > 0).float() == ys).float().mean()),
            "grl_weight": self.weight,
            "adversary_reset": float(self.reset),
        }

    def card(self, result: FitResult) -> dict:
        c = self.config
        self.pipe.eval()
        self.held_out = _report(self.pipe, self.corpus_root, self.test_utts, self.classes, c, self.device)
        self.validation = (
            _report(self.pipe, self.corpus_root, self.val_utts, self.classes, c, self.device) if self.val_utts else {}
        )
        seen = self.train_utts + self.val_utts
        return {
            "corpus": str(Path(self.options.corpus).resolve()),
            "utility": c.utility,
            "attribute": c.attribute,
            "classes": self.classes,
            "n_train": len(self.train_utts),
            "n_val": len(self.val_utts),
            "n_test": len(self.test_utts),
            "held_out": self.held_out,
            "train_speakers": sorted({str(u.speaker) for u in seen if u.speaker}),
            "held_out_speakers": sorted({str(u.speaker) for u in self.test_utts if u.speaker}),
            "train_event_sources": sorted({str(u.labels.get("event_source_id") or "") for u in seen} - {""}),
            "held_out_event_sources": sorted(
                {str(u.labels.get("event_source_id") or "") for u in self.test_utts} - {""}
            ),
            "validation": self.validation,
            "train_seconds": round(result.seconds, 1),
            "paper": {"event_accuracy": 0.86, "speech_attacker_accuracy": 0.50, "speech_attacker_auc": 0.50},
        }

    def finish(self, result: FitResult) -> dict:
        """The held-out figures (and the validation sources' under `validation`)."""
        return {
            "train_seconds": round(result.seconds, 1),
            **self.held_out,
            **({"validation": self.validation} if self.validation else {}),
        }


def augment(logmels: torch.Tensor, gen: torch.Generator, max_band: int = 8, max_span: int = 25) -> torch.Tensor:
    """Log-mels (B, 1, n_mels, T) each shifted circularly in time by a random number of frames, with one band of
    up to `max_band` mel channels and one span of up to `max_span` frames set to the item's mean (SpecAugment's
    frequency and time masks, Park et al., Interspeech 2019). Draws from `gen`; returns a new tensor."""
    b, _, n_mels, t = logmels.shape
    out = logmels.clone()
    shifts = torch.randint(0, t, (b,), generator=gen)
    bands = torch.randint(0, max_band + 1, (b,), generator=gen)
    spans = torch.randint(0, max_span + 1, (b,), generator=gen)
    f0 = (torch.rand(b, generator=gen) * (n_mels - bands + 1)).long()
    t0 = (torch.rand(b, generator=gen) * (t - spans + 1).clamp_min(1)).long()
    for i in range(b):
        item = torch.roll(out[i], int(shifts[i]), dims=-1)
        fill = item.mean()
        item[:, f0[i] : f0[i] + bands[i], :] = fill
        item[:, :, t0[i] : t0[i] + spans[i]] = fill
        out[i] = item
    return out


def _fresh_discriminator(pipe, inputs, y_speech, config, device, gen) -> SpeechDiscriminator:
    """A new discriminator trained on frozen features; it becomes the adversary (RDAL-M's reset)."""
    pipe.extractor.eval()
    with torch.no_grad():
        feats = torch.cat([pipe.extractor(inputs[s : s + 64].to(device)) for s in range(0, len(inputs), 64)])
    disc = make_discriminator(config).to(device)
    opt = torch.optim.Adam(disc.parameters(), lr=config.lr)
    ys = y_speech.to(device)
    for _ in range(config.refresh_epochs):
        order = torch.randperm(len(feats), generator=gen)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size].to(device)
            if len(idx) < 2:
                continue
            loss = F.binary_cross_entropy_with_logits(disc(feats[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return disc


def _report(pipe, corpus_root, test_utts, classes, config, device) -> dict:
    """Held-out mixtures: event accuracy, speech attacker on the embeddings (CV), mean SDR of the mask."""
    if len(test_utts) < 10:
        return {}
    pipe.eval()
    mixes, events = load_items(corpus_root, test_utts, config)
    feats, correct, sdrs, groups = [], [], [], []
    with torch.no_grad():
        for utt, mix, event in zip(test_utts, mixes, events):
            z = pipe.embed(mix.to(device))
            feats.append(z.cpu().numpy())
            label = utt.labels[config.utility]
            correct.append(label in classes and int(pipe.classifier(z[None]).argmax()) == classes.index(label))
            groups.append(str(utt.labels.get(config.group) or ""))
            sdrs.append(sdr_db(event.numpy(), pipe.suppress(mix.to(device)).cpu().numpy()))
    ys = speech_labels(test_utts, config.attribute)
    out = {"event_accuracy": float(np.mean(correct)), "sdr_db_mean": float(np.mean(sdrs)), "n_test": len(test_utts)}
    if len(set(groups) - {""}) > 1:  # per events corpus: each has its own target
        out["event_accuracy_by_group"] = {
            g: float(np.mean([ok for ok, h in zip(correct, groups) if h == g])) for g in sorted(set(groups) - {""})
        }
    if 0 < ys.sum() < len(ys):
        probe = cross_validated_probe(np.stack(feats), ys.astype(int), seed=config.seed)
        out.update(
            {
                "speech_attacker_accuracy": probe["accuracy"],
                "speech_attacker_auc": probe["auc"],
                "speech_attacker_chance": probe["chance"],
            }
        )
    return out
