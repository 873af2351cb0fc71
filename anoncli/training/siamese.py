"""`anoncli train --method siamese`: contrastive feature extractor, then the utility head on frozen features.

Stage 1 trains `SiameseNet` on pairs of random crops, half of them from the
same utility class (gender) and half from different classes, with the
contrastive loss (margin 1). `--param loss=ce` trains the same network with
plain cross-entropy on the utility label instead (the "no contrastive loss"
comparison). Stage 2 freezes the network and trains the gender MLP head
(1024, dropout 0.5). Speakers are split speaker-disjointly (the corpus' own
`split` column when it has train and test, e.g. TIMIT; otherwise
`val_speakers` or a `val_fraction` of the speakers, balanced over genders);
the held-out speakers are never used for training or model selection, only
reported.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from anoncli.progress import progress_bar

from anoncli.audio import read_audio, resample
from anoncli.corpus import open_corpus
from anoncli.errors import AnoncliError
from anoncli.models.siamese_net import SiameseNet, UtilityHead, contrastive_loss
from anoncli.scoring.probe import cross_validated_probe
from anoncli.training import TrainOptions
from anoncli.training.common import (
    RunFolder, resolve_run_config, limit_cpu_threads, pick_device, rng_state,
    seed_everything, set_rng_state, speaker_split,
)

PRESETS = {
    # CPU-sized: a quarter of the paper's channel widths, 3 groups.
    "quick": {"groups": 3, "width": 0.25, "sample_rate": 16000, "crop_s": 1.5, "epochs": 12,
              "pairs_per_epoch": 768, "batch_size": 32, "lr": 2e-4, "margin": 1.0, "loss": "contrastive",
              "head_epochs": 40, "head_hidden": 1024, "val_fraction": 0.34, "val_speakers": [], "threads": 1},
    # The paper's network (channels 64..512); G is the paper's swept hyper-parameter.
    "full": {"groups": 4, "width": 1.0, "sample_rate": 16000, "crop_s": 1.5, "epochs": 60,
             "pairs_per_epoch": 4096, "batch_size": 64, "lr": 2e-4, "margin": 1.0, "loss": "contrastive",
             "head_epochs": 100, "head_hidden": 1024, "val_fraction": 0.34, "val_speakers": [], "threads": 0},
}


def load_waves(utterances, sample_rate: int, desc: str = "reading audio") -> list[torch.Tensor]:
    waves = []
    for utt in progress_bar(utterances, desc=desc, leave=False, enabled=None):
        audio = read_audio(utt.path)
        waves.append(resample(torch.from_numpy(audio.samples), audio.sample_rate, sample_rate))
    return waves


def random_crop(wave: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """A crop of exactly `length` samples; short waves are tiled first."""
    if len(wave) < length:
        wave = wave.repeat(length // max(1, len(wave)) + 1)
    start = int(torch.randint(0, len(wave) - length + 1, (1,), generator=gen))
    return wave[start:start + length]


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
def embed(net: SiameseNet, waves: list[torch.Tensor], device: torch.device) -> np.ndarray:
    """Features of whole utterances (one at a time: lengths differ)."""
    net.eval()
    return np.stack([net(w.to(device)[None])[0].cpu().numpy() for w in waves])


def _resolve_config(options: TrainOptions) -> dict:
    config = resolve_run_config(PRESETS, options)
    if config["loss"] not in ("contrastive", "ce"):
        raise AnoncliError(f"--param loss={config['loss']}: expected contrastive or ce")
    config["utility"] = options.utility or "gender"
    config["seed"] = options.seed
    return config


def train(options: TrainOptions) -> dict:
    config = _resolve_config(options)
    limit_cpu_threads(config["threads"] or None)
    device = pick_device(options.device)
    run = RunFolder(options.out, config, overwrite=options.overwrite)
    gen = seed_everything(options.seed)

    corpus = open_corpus(options.corpus, options.labels_file, options.layout)
    utility = config["utility"]
    utts = [u for u in corpus.utterances if u.labels.get(utility)]
    if not utts:
        raise AnoncliError(f"{options.corpus}: no utterance has a {utility!r} label")
    splits = {u.labels.get("split") for u in utts}
    if not config["val_speakers"] and {"train", "test"} <= splits:
        # The corpus' own speaker-disjoint split (TIMIT train/test; mixtures made by anoncli.tools).
        train_utts = [u for u in utts if u.labels.get("split") == "train"]
        val_utts = [u for u in utts if u.labels.get("split") == "test"]
        val_speakers = sorted({u.speaker for u in val_utts})
    else:
        train_utts, val_utts, val_speakers = speaker_split(
            utts, config["val_speakers"] or None, config["val_fraction"], options.seed, stratify_label=utility)
    classes = sorted({u.labels[utility] for u in train_utts})
    if len(classes) < 2:
        raise AnoncliError(f"the training speakers cover only one {utility} class ({classes[0]})")
    y_train = np.asarray([classes.index(u.labels[utility]) for u in train_utts])
    sr = config["sample_rate"]
    waves = load_waves(train_utts, sr)
    crop = int(config["crop_s"] * sr)

    net = SiameseNet(config["groups"], config["width"], sr).to(device)
    ce_head = UtilityHead(net.feature_dim, len(classes), config["head_hidden"]).to(device)
    params = list(net.parameters()) + (list(ce_head.parameters()) if config["loss"] == "ce" else [])
    opt = torch.optim.Adam(params, lr=config["lr"])
    head = UtilityHead(net.feature_dim, len(classes), config["head_hidden"]).to(device)
    head_opt = torch.optim.Adam(head.parameters(), lr=config["lr"])

    state = run.resume(device)
    start_epoch, start_head = 0, 0
    if state is not None:
        net.load_state_dict(state["net"]); ce_head.load_state_dict(state["ce_head"]); opt.load_state_dict(state["opt"])
        head.load_state_dict(state["head"]); head_opt.load_state_dict(state["head_opt"])
        start_epoch, start_head = int(state["epoch"]), int(state["head_epoch"])
        set_rng_state(state.get("rng")); gen.set_state(state["gen"])
        run.truncate_log(start_epoch + start_head)

    def checkpoint(epoch: int, head_epoch: int, best: bool = False) -> None:
        run.save({
            "method": "siamese", "net": net.state_dict(), "ce_head": ce_head.state_dict(), "opt": opt.state_dict(),
            "head": head.state_dict(), "head_opt": head_opt.state_dict(), "epoch": epoch, "head_epoch": head_epoch,
            "rng": rng_state(), "gen": gen.get_state(), "config": config, "classes": classes,
            "feature_dim": net.feature_dim, "train_speakers": sorted({u.speaker for u in train_utts}),
        }, best=best)

    # Stage 1: the feature extractor.
    bs = config["batch_size"]
    for epoch in range(start_epoch, config["epochs"]):
        net.train(); ce_head.train()
        t0, losses = time.time(), []
        a_idx, b_idx, diff = draw_pairs(y_train, config["pairs_per_epoch"], gen)
        for s in progress_bar(range(0, len(a_idx), bs), desc=f"siamese epoch {epoch + 1}/{config['epochs']}", leave=False, enabled=None, log_step_percent=100):
            sl = slice(s, s + bs)
            xa = torch.stack([random_crop(waves[i], crop, gen) for i in a_idx[sl]]).to(device)
            if config["loss"] == "contrastive":
                xb = torch.stack([random_crop(waves[i], crop, gen) for i in b_idx[sl]]).to(device)
                feats = net(torch.cat([xa, xb]))
                loss = contrastive_loss(feats[:len(xa)], feats[len(xa):], torch.from_numpy(diff[sl]).to(device), config["margin"])
            else:
                loss = F.cross_entropy(ce_head(net(xa)), torch.from_numpy(y_train[a_idx[sl]]).to(device))
            opt.zero_grad(); loss.backward(); opt.step()
            losses.append(float(loss.detach()))
        run.log({"stage": "features", "epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.time() - t0})
        checkpoint(epoch + 1, 0)

    # Stage 2: the utility head on frozen features (of fixed crops: cheap and batchable).
    train_feats = torch.from_numpy(embed(net, waves, device)).to(device)
    y_t = torch.from_numpy(y_train).to(device)
    for head_epoch in range(start_head, config["head_epochs"]):
        head.train()
        order = torch.randperm(len(y_t), generator=gen)
        losses = []
        for s in range(0, len(order), bs):
            idx = order[s:s + bs].to(device)
            loss = F.cross_entropy(head(train_feats[idx]), y_t[idx])
            head_opt.zero_grad(); loss.backward(); head_opt.step()
            losses.append(float(loss.detach()))
        run.log({"stage": "head", "epoch": config["epochs"] + head_epoch + 1, "loss": float(np.mean(losses))})
        checkpoint(config["epochs"], head_epoch + 1, best=head_epoch + 1 == config["head_epochs"])

    summary = _report(net, head, classes, train_utts, val_utts, val_speakers, config, device, waves)
    card = {"method": "siamese", "corpus": str(Path(options.corpus).resolve()), "utility": utility,
            "classes": classes, "train_speakers": sorted({u.speaker for u in train_utts}),
            "held_out_speakers": val_speakers, "config": config, "held_out": summary,
            "paper": {"dataset": "TIMIT, 20 speakers", "gender_accuracy": 0.94, "attacker_speaker_id": 0.11, "chance": 0.10}}
    run.write_card(card)
    return {"run": str(run.root), **summary}


def _report(net, head, classes, train_utts, val_utts, val_speakers, config, device, train_waves) -> dict:
    """Held-out speakers: the model's own head (utility) and a speaker-ID attacker within each gender.

    With few speakers a gender may have a single held-out speaker; the attacker
    is then also run on all speakers of the gender (training speakers
    included), reported separately as `attacker_speaker_id_all_speakers`.
    """
    if not val_utts:
        return {}
    utility = config["utility"]
    feats = embed(net, load_waves(val_utts, config["sample_rate"], "held-out audio"), device)
    head.eval()
    with torch.no_grad():
        pred = head(torch.from_numpy(feats).to(device)).argmax(1).cpu().numpy()
    truth = np.asarray([classes.index(u.labels[utility]) if u.labels[utility] in classes else -1 for u in val_utts])
    out = {"utility_accuracy": float(np.mean(pred == truth)), "n_held_out": len(val_utts)}
    attackers = _attack_within(feats, val_utts, utility, config["seed"])
    out["attacker_speaker_id"] = attackers
    everyone = list(train_utts) + list(val_utts)
    all_feats = np.concatenate([embed(net, train_waves, device), feats])
    out["attacker_speaker_id_all_speakers"] = _attack_within(all_feats, everyone, utility, config["seed"])
    return out


def _attack_within(feats, utts, utility, seed) -> dict:
    result = {}
    for value in sorted({u.labels[utility] for u in utts}):
        idx = [i for i, u in enumerate(utts) if u.labels[utility] == value]
        speakers = [utts[i].speaker for i in idx]
        if len(set(speakers)) >= 2:
            probe = cross_validated_probe(feats[idx], speakers, seed=seed)
            result[value] = {"accuracy": probe["accuracy"], "chance": probe["chance"], "speakers": len(set(speakers))}
    return result
