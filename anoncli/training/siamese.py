"""`anoncli train --method siamese`: contrastive feature extractor, then the utility head on frozen features.

Stage 1 trains `SiameseNet` on pairs of random crops, half of them from the
same utility class (gender) and half from different classes, with the
contrastive loss (margin 1). `--param loss=ce` trains the same network with
plain cross-entropy on the utility label instead (the "no contrastive loss"
comparison). Options that make the features carry less identity, each
measured in docs/results.md: `norm=cmvn` (per-utterance cepstral mean and
variance normalisation), `bottleneck=N` (a linear projection to N dims),
`noise=S` (Gaussian noise of std S added to the features in training and to
every released vector, seeded per utterance: randomised features whose
gender margin survives while small speaker differences drown),
`grl_weight=W` (a speaker classifier over the training speakers behind a
gradient-reversal layer, next to the contrastive loss).
Stage 2 freezes the network and trains the gender MLP head (1024, dropout
0.5) on whole training utterances. Both stages are epochs of one run of the
training loop (`anoncli.training.loop.fit`: `epochs`, then `head_epochs`),
so a killed run resumes in either stage.

Speakers are split speaker-disjointly: by the corpus' own `split` column when
it has "train" and "test" (TIMIT; corpora made by recipes/siamese/make_corpus.py,
which may also mark "val" speakers for model selection), otherwise by
`val_speakers` or a `val_fraction` of the speakers, balanced over genders.
Held-out speakers are never used for training; the report gives, per held-out
part, the model head's utility accuracy and a speaker-ID attacker within each
value of the utility label (and of `attacker_groups`, e.g. the source corpus),
next to the same attacker on plain MFCC statistics for reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anoncli.errors import AnoncliError
from anoncli.models.rdalm_nets import grl_weight
from anoncli.models.siamese_net import SiameseNet, SpeakerAdversary, UtilityHead, add_feature_noise, contrastive_loss
from anoncli.scoring.probe import cross_validated_probe
from anoncli.training.common import atomic_torch_save, check_split_classes, load_waves, speaker_split
from anoncli.training.loop import FitResult, TrainConfig, Trainer, data_fingerprint


@dataclass
class SiameseConfig(TrainConfig):
    """Siamese settings. The extractor: `groups` conv groups at `width` × the paper's channels, `norm`
    (instance or cmvn), `bottleneck` (0: none), trained `epochs` epochs of `pairs_per_epoch` pairs of
    `crop_s`-second crops with `loss` (contrastive, margin `margin`; or ce) and Adam `lr`; `noise` (std
    of the released feature noise); a speaker adversary behind a gradient reversal of weight
    `grl_weight` (0: none), 0 for `grl_warmup_epochs`, ramped over `grl_ramp_epochs`. Then the utility
    head (`head_hidden` units) for `head_epochs` epochs on frozen features. `utility` is the label
    (`--utility`); validation speakers: `val_speakers`, else a `val_fraction`; the report's attacker
    also groups by `attacker_groups`; `cache_dir` keeps MFCCs between runs."""

    sample_rate: int = 16000
    groups: int = 3
    width: float = 0.25
    pairs_per_epoch: int = 768
    crop_s: float = 1.5
    lr: float = 2e-4
    margin: float = 1.0
    loss: str = "contrastive"
    norm: str = "instance"
    bottleneck: int = 0
    noise: float = 0.0
    grl_weight: float = 0.0
    grl_warmup_epochs: int = 2
    grl_ramp_epochs: int = 4
    head_epochs: int = 40
    head_hidden: int = 1024
    utility: str = "gender"
    val_fraction: float = 0.34
    val_speakers: list[str] = field(default_factory=list)
    attacker_groups: list[str] = field(default_factory=list)
    cache_dir: str = ""

    def check(self) -> None:
        """Raise AnoncliError for an unknown `loss` or `norm`."""
        super().check()
        if self.loss not in ("contrastive", "ce"):
            raise AnoncliError(f"--param loss={self.loss}: expected contrastive or ce")
        if self.norm not in ("instance", "cmvn"):
            raise AnoncliError(f"--param norm={self.norm}: expected instance or cmvn")


PRESETS = {
    # CPU-sized: a quarter of the paper's channel widths, 3 groups.
    "quick": SiameseConfig(
        groups=3, width=0.25, epochs=12, pairs_per_epoch=768, batch_size=32, head_epochs=40, threads=1, amp=False
    ),
    # The paper's network (channels 64..512); G is the paper's swept hyper-parameter.
    "full": SiameseConfig(
        groups=4, width=1.0, epochs=60, pairs_per_epoch=4096, batch_size=64, head_epochs=100, threads=0, amp=False
    ),
}


def random_crop(wave: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """A crop of exactly `length` samples (last axis); short inputs are tiled first."""
    if wave.shape[-1] < length:
        wave = wave.repeat(*([1] * (wave.dim() - 1)), length // max(1, wave.shape[-1]) + 1)
    start = int(torch.randint(0, wave.shape[-1] - length + 1, (1,), generator=gen))
    return wave[..., start : start + length]


def draw_pairs(labels: np.ndarray, n_pairs: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (a, b) and a `different` flag: exactly half same-class pairs, half different-class."""
    classes = sorted(set(labels.tolist()))
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    a, b, diff = [], [], []
    for k in range(n_pairs):
        different = k % 2 == 1
        c1 = classes[int(torch.randint(len(classes), (1,), generator=gen))]
        if different:
            others = [c for c in classes if c != c1]
            c2 = others[int(torch.randint(len(others), (1,), generator=gen))]
        else:
            c2 = c1
        a.append(by_class[c1][int(torch.randint(len(by_class[c1]), (1,), generator=gen))])
        b.append(by_class[c2][int(torch.randint(len(by_class[c2]), (1,), generator=gen))])
        diff.append(different)
    return np.asarray(a), np.asarray(b), np.asarray(diff)


@torch.no_grad()
def mfcc_cache(net: SiameseNet, waves: list[torch.Tensor]) -> list[torch.Tensor]:
    """Un-normalised MFCCs (1, n_mfcc, frames) of each wave, computed once (the front end has no weights),
    on the network's device and kept on the CPU."""
    device = next(net.parameters()).device
    return [net.mfcc(w[None].to(device))[0].cpu() for w in waves]


def load_mfccs(net: SiameseNet, utts, config: SiameseConfig, desc: str) -> list[torch.Tensor]:
    """MFCCs of `utts`; with `cache_dir` set, read from / added to CACHE/mfcc-<rate>.pt (keyed by file path)."""
    if not config.cache_dir:
        return mfcc_cache(net, load_waves(utts, config.sample_rate, desc))
    path = Path(config.cache_dir) / f"mfcc-{config.sample_rate}.pt"
    cache = torch.load(path, weights_only=True) if path.is_file() else {}
    missing = [u for u in utts if str(u.path) not in cache]
    if missing:
        for utt, m in zip(missing, mfcc_cache(net, load_waves(missing, config.sample_rate, desc))):
            cache[str(utt.path)] = m
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(cache, path)
    return [cache[str(u.path)] for u in utts]


@torch.no_grad()
def embed(
    net: SiameseNet, mfccs: list[torch.Tensor], device: torch.device, noise: float = 0.0, seed: int = 0
) -> np.ndarray:
    """Features of whole utterances from their cached MFCCs (one at a time: lengths differ), with the
    released feature noise (`noise` std; item k's noise seeded with seed + k)."""
    net.eval()
    return np.stack(
        [
            add_feature_noise(net.embed_mfcc(m[None].to(device))[0].cpu(), noise, seed + k).numpy()
            for k, m in enumerate(mfccs)
        ]
    )


def mfcc_statistics(mfccs: list[torch.Tensor]) -> np.ndarray:
    """Per-utterance mean and standard deviation of each cepstrum: the attacker's reference input."""
    return np.stack([torch.cat([m[0].mean(-1), m[0].std(-1)]).numpy() for m in mfccs])


def split_utterances(utts, config: SiameseConfig, seed: int) -> dict[str, list]:
    """{"train", "val", "test"} utterance lists, speaker-disjoint (see the module docstring)."""
    splits = {u.labels.get("split") for u in utts}
    if not config.val_speakers and {"train", "test"} <= splits:
        return {name: [u for u in utts if u.labels.get("split") == name] for name in ("train", "val", "test")}
    train_utts, val_utts, _ = speaker_split(
        utts, config.val_speakers or None, config.val_fraction, seed, stratify_label=config.utility
    )
    return {"train": train_utts, "val": [], "test": val_utts}


class SiameseTrainer(Trainer):
    """`anoncli train --method siamese`: the contrastive extractor for `epochs` epochs, then the utility head
    on its frozen features for `head_epochs` more (one run of the loop; the epoch number tells the stages
    apart). The card and the summary give the held-out figures (`_report`). Raises AnoncliError for a
    corpus without the utility label or with one class among the training speakers."""

    method = "siamese"
    config_class = SiameseConfig
    presets = PRESETS
    selection = ("val_score", "max")  # no per-epoch validation: every epoch is the newest best

    def total_epochs(self) -> int:
        return self.config.epochs + self.config.head_epochs

    def setup(self) -> None:
        c = self.config
        corpus = self.options.open_corpus()
        utts = [u for u in corpus.utterances if u.labels.get(c.utility)]
        if not utts:
            raise AnoncliError(f"{self.options.corpus}: no utterance has a {c.utility!r} label")
        self.corpus_root = Path(self.options.corpus).resolve()
        self.data_fingerprint = data_fingerprint(utts)
        self.parts = split_utterances(utts, c, c.seed)
        self.train_utts = train_utts = self.parts["train"]
        # held-out speakers: the validation split, else the test split the report scores
        held_out = self.parts["val"] or self.parts["test"]
        check_split_classes(
            train_utts,
            held_out,
            lambda u: u.labels[c.utility],
            c.utility,
            what=self.train_name() if c.progress else "",
            need_val=False,
        )
        self.classes = sorted({u.labels[c.utility] for u in train_utts})
        self.y_train = np.asarray([self.classes.index(u.labels[c.utility]) for u in train_utts])
        self.speakers = sorted({str(u.speaker) for u in train_utts})
        # every speaker the run looked at (training and model selection): evaluation leaves them out
        self.seen_speakers = sorted(set(self.speakers) | {str(u.speaker) for u in self.parts["val"]})
        self.s_train = torch.tensor([self.speakers.index(str(u.speaker)) for u in train_utts])
        self.net = SiameseNet(c.groups, c.width, c.sample_rate, norm=c.norm, bottleneck=c.bottleneck)
        self.mfccs = load_mfccs(self.net, train_utts, c, "reading audio")
        hop = self.net.front.mfcc.MelSpectrogram.spectrogram.hop_length
        self.crop = int(round(c.crop_s * c.sample_rate / hop))
        self.ce_head = UtilityHead(self.net.feature_dim, len(self.classes), c.head_hidden)
        self.adversary = SpeakerAdversary(self.net.feature_dim, len(self.speakers))
        self.head = UtilityHead(self.net.feature_dim, len(self.classes), c.head_hidden)
        params = list(self.net.parameters()) + (list(self.ce_head.parameters()) if c.loss == "ce" else [])
        params += list(self.adversary.parameters()) if c.grl_weight > 0 else []
        self.opts = {
            "features": torch.optim.Adam(params, lr=c.lr),
            "head": torch.optim.Adam(self.head.parameters(), lr=c.lr),
        }
        self.frozen: torch.Tensor | None = None  # stage 2's features of the training utterances
        self.weight = 0.0

    def modules(self):
        return {"net": self.net, "ce_head": self.ce_head, "adversary": self.adversary, "head": self.head}

    def optimizers(self):
        return self.opts

    def inference_modules(self):
        return ["net", "head"]

    def model_info(self) -> dict:
        c = self.config
        config = {
            key: getattr(c, key)
            for key in (
                "sample_rate",
                "groups",
                "width",
                "norm",
                "bottleneck",
                "noise",
                "loss",
                "head_hidden",
                "utility",
                "seed",
            )
        }
        return {
            "config": config,
            "classes": self.classes,
            "feature_dim": self.net.feature_dim,
            "train_speakers": self.seen_speakers,
        }

    def extra_state(self) -> dict:
        return {"extractor_epochs": self.config.epochs, "epoch": self.epoch}

    def load_extra_state(self, state: dict) -> None:
        """Refuse another `epochs` once the head stage has begun (the head learnt the extractor's features)."""
        done = int(state.get("extractor_epochs", self.config.epochs))
        if done != self.config.epochs and int(state.get("epoch", 0)) > done:
            raise AnoncliError(
                f"{self.options.out}: its extractor was trained for {done} epochs and its head on those "
                f"features; --epochs {self.config.epochs} would need both again: use --overwrite "
                "or another --out"
            )

    def batches(self, epoch: int):
        c = self.config
        if epoch <= c.epochs:  # stage 1: pairs of crops for the extractor
            self.weight = grl_weight(epoch - 1, c.grl_warmup_epochs, c.grl_ramp_epochs, c.grl_weight)
            a_idx, b_idx, diff = draw_pairs(self.y_train, c.pairs_per_epoch, self.rng)
            return [
                ("features", a_idx[s : s + c.batch_size], b_idx[s : s + c.batch_size], diff[s : s + c.batch_size])
                for s in range(0, len(a_idx), c.batch_size)
            ]
        if self.frozen is None:  # stage 2: the utility head on frozen features of whole utterances
            self.frozen = torch.from_numpy(embed(self.net, self.mfccs, self.device, c.noise, c.seed)).to(self.device)
        order = torch.randperm(len(self.y_train), generator=self.rng)
        return [("head", order[s : s + c.batch_size]) for s in range(0, len(order), c.batch_size)]

    def train_step(self, batch) -> dict[str, float]:
        if batch[0] == "head":
            idx = batch[1].to(self.device)
            loss = F.cross_entropy(self.head(self.frozen[idx]), torch.from_numpy(self.y_train).to(self.device)[idx])
            self.optimize("head", loss)
            return {"head_loss": loss.item()}
        c, device = self.config, self.device
        _, a_idx, b_idx, diff = batch
        xa = torch.stack([random_crop(self.mfccs[i], self.crop, self.rng) for i in a_idx]).to(device)
        if c.loss == "contrastive":
            xb = torch.stack([random_crop(self.mfccs[i], self.crop, self.rng) for i in b_idx]).to(device)
            feats = add_feature_noise(self.net.embed_mfcc(torch.cat([xa, xb])), c.noise, generator=self.rng)
            loss = contrastive_loss(feats[: len(xa)], feats[len(xa) :], torch.from_numpy(diff).to(device), c.margin)
            who = torch.cat([self.s_train[a_idx], self.s_train[b_idx]]).to(device)
        else:
            feats = add_feature_noise(self.net.embed_mfcc(xa), c.noise, generator=self.rng)
            loss = F.cross_entropy(self.ce_head(feats), torch.from_numpy(self.y_train[a_idx]).to(device))
            who = self.s_train[a_idx].to(device)
        losses = {"loss": loss.item()}
        if c.grl_weight > 0:
            adv_loss = F.cross_entropy(self.adversary(feats, self.weight), who)
            loss = loss + adv_loss
            losses.update(grl_weight=self.weight, speaker_loss=adv_loss.item())
        self.optimize("features", loss)
        return losses

    def card(self, result: FitResult) -> dict:
        c = self.config
        args = (self.net, self.head, self.classes)
        self.report = {
            name: _report(*args, self.parts[name], c, self.device, self.train_utts, self.mfccs)
            for name in ("val", "test")
            if self.parts[name]
        }
        return {
            "corpus": str(self.corpus_root),
            "utility": c.utility,
            "classes": self.classes,
            "train_speakers": self.speakers,
            "n_train_utterances": len(self.train_utts),
            "val_speakers": sorted({str(u.speaker) for u in self.parts["val"]}),
            "held_out_speakers": sorted({str(u.speaker) for u in self.parts["test"]}),
            "train_seconds": round(result.seconds, 1),
            "held_out": self.report.get("test", {}),
            "validation": self.report.get("val", {}),
            "paper": {
                "dataset": "TIMIT, 20 speakers",
                "gender_accuracy": 0.94,
                "attacker_speaker_id": 0.11,
                "chance": 0.10,
            },
        }

    def finish(self, result: FitResult) -> dict:
        """The held-out test figures (and the validation speakers' under `validation`)."""
        return {
            "train_seconds": round(result.seconds, 1),
            **self.report.get("test", {}),
            **({"validation": self.report["val"]} if "val" in self.report else {}),
        }


def _report(net, head, classes, utts, config, device, train_utts, train_mfccs) -> dict:
    """Held-out utterances: the model's own head (utility) and a speaker-ID attacker within each group.

    Groups are the values of the utility label combined with `attacker_groups`
    columns; the same attacker on plain MFCC statistics is the reference. When
    a group has a single held-out speaker (few-speaker corpora), the attacker
    is also run on the training and held-out speakers together, reported as
    `attacker_speaker_id_all_speakers` (optimistic: training speakers included).
    """
    utility = config.utility
    mfccs = load_mfccs(net, utts, config, "held-out audio")
    feats = embed(net, mfccs, device, config.noise, config.seed + 1_000_000)
    head.eval()
    with torch.no_grad():
        pred = head(torch.from_numpy(feats).to(device)).argmax(1).cpu().numpy()
    truth = np.asarray([classes.index(u.labels[utility]) if u.labels[utility] in classes else -1 for u in utts])
    groups = [utility, *config.attacker_groups]
    out = {
        "utility_accuracy": float(np.mean(pred == truth)),
        "n_held_out": len(utts),
        "speakers": len({u.speaker for u in utts}),
    }
    out["attacker_speaker_id"] = _attack_within(feats, utts, groups, config.seed)
    out["attacker_on_mfcc_statistics"] = _attack_within(mfcc_statistics(mfccs), utts, groups, config.seed)
    keys = {"/".join(str(u.labels.get(c, "")) for c in groups) for u in utts}
    if any(k not in out["attacker_speaker_id"] for k in keys):
        everyone = list(train_utts) + list(utts)
        all_feats = np.concatenate([embed(net, train_mfccs, device, config.noise, config.seed), feats])
        out["attacker_speaker_id_all_speakers"] = _attack_within(all_feats, everyone, groups, config.seed)
    return out


def _attack_within(feats, utts, group_columns, seed) -> dict:
    """Cross-validated speaker-ID accuracy and chance within each group of utterances, plus their
    item-weighted mean ("mean")."""
    result = {}
    keys = ["/".join(str(u.labels.get(c, "")) for c in group_columns) for u in utts]
    for value in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == value]
        speakers = [str(utts[i].speaker) for i in idx]
        if len(set(speakers)) >= 2:
            probe = cross_validated_probe(feats[idx], speakers, seed=seed)
            result[value] = {
                "accuracy": probe["accuracy"],
                "chance": probe["chance"],
                "speakers": len(set(speakers)),
                "n": len(idx),
            }
    if result:
        n = sum(v["n"] for v in result.values())
        result["mean"] = {
            "accuracy": sum(v["accuracy"] * v["n"] for v in result.values()) / n,
            "chance": sum(v["chance"] * v["n"] for v in result.values()) / n,
            "n": n,
        }
    return result
