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
0.5) on whole training utterances.

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

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from anoncli.progress import progress_bar

from anoncli.errors import AnoncliError
from anoncli.models.rdalm_nets import grl_weight
from anoncli.models.siamese_net import SiameseNet, SpeakerAdversary, UtilityHead, add_feature_noise, contrastive_loss
from anoncli.scoring.probe import cross_validated_probe
from anoncli.training import TrainOptions
from anoncli.training.common import (
    RunFolder, resolve_run_config, limit_cpu_threads, load_waves, pick_device, rng_state,
    seed_everything, set_rng_state, speaker_split,
)

_COMMON = {"sample_rate": 16000, "crop_s": 1.5, "lr": 2e-4, "margin": 1.0, "loss": "contrastive",
           "head_hidden": 1024, "val_fraction": 0.34, "val_speakers": [], "norm": "instance", "bottleneck": 0,
           "grl_weight": 0.0, "grl_warmup_epochs": 2, "grl_ramp_epochs": 4, "attacker_groups": [], "cache_dir": "",
           "noise": 0.0}
PRESETS = {
    # CPU-sized: a quarter of the paper's channel widths, 3 groups.
    "quick": {**_COMMON, "groups": 3, "width": 0.25, "epochs": 12, "pairs_per_epoch": 768, "batch_size": 32,
              "head_epochs": 40, "threads": 1},
    # The paper's network (channels 64..512); G is the paper's swept hyper-parameter.
    "full": {**_COMMON, "groups": 4, "width": 1.0, "epochs": 60, "pairs_per_epoch": 4096, "batch_size": 64,
             "head_epochs": 100, "threads": 0},
}


def random_crop(wave: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """A crop of exactly `length` samples (last axis); short inputs are tiled first."""
    if wave.shape[-1] < length:
        wave = wave.repeat(*([1] * (wave.dim() - 1)), length // max(1, wave.shape[-1]) + 1)
    start = int(torch.randint(0, wave.shape[-1] - length + 1, (1,), generator=gen))
    return wave[..., start:start + length]


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
    """Un-normalised MFCCs (1, n_mfcc, frames) of each wave, computed once (the front end has no weights)."""
    return [net.mfcc(w[None])[0] for w in waves]


def load_mfccs(net: SiameseNet, utts, config: dict, desc: str) -> list[torch.Tensor]:
    """MFCCs of `utts`; with `cache_dir` set, read from / added to CACHE/mfcc-<rate>.pt (keyed by file path)."""
    if not config["cache_dir"]:
        return mfcc_cache(net, load_waves(utts, config["sample_rate"], desc))
    from anoncli.training.common import atomic_torch_save

    path = Path(config["cache_dir"]) / f"mfcc-{config['sample_rate']}.pt"
    cache = torch.load(path, weights_only=True) if path.is_file() else {}
    missing = [u for u in utts if str(u.path) not in cache]
    if missing:
        for utt, m in zip(missing, mfcc_cache(net, load_waves(missing, config["sample_rate"], desc))):
            cache[str(utt.path)] = m
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(cache, path)
    return [cache[str(u.path)] for u in utts]


@torch.no_grad()
def embed(net: SiameseNet, mfccs: list[torch.Tensor], device: torch.device, noise: float = 0.0,
          seed: int = 0) -> np.ndarray:
    """Features of whole utterances from their cached MFCCs (one at a time: lengths differ), with the
    released feature noise (`noise` std; item k's noise seeded with seed + k)."""
    net.eval()
    return np.stack([add_feature_noise(net.embed_mfcc(m[None].to(device))[0].cpu(), noise, seed + k).numpy()
                     for k, m in enumerate(mfccs)])


def mfcc_statistics(mfccs: list[torch.Tensor]) -> np.ndarray:
    """Per-utterance mean and standard deviation of each cepstrum: the attacker's reference input."""
    return np.stack([torch.cat([m[0].mean(-1), m[0].std(-1)]).numpy() for m in mfccs])


def _resolve_config(options: TrainOptions) -> dict:
    config = resolve_run_config(PRESETS, options)
    if config["loss"] not in ("contrastive", "ce"):
        raise AnoncliError(f"--param loss={config['loss']}: expected contrastive or ce")
    if config["norm"] not in ("instance", "cmvn"):
        raise AnoncliError(f"--param norm={config['norm']}: expected instance or cmvn")
    config["utility"] = options.utility or "gender"
    config["seed"] = options.seed
    return config


def split_utterances(utts, config: dict, seed: int) -> dict[str, list]:
    """{"train", "val", "test"} utterance lists, speaker-disjoint (see the module docstring)."""
    splits = {u.labels.get("split") for u in utts}
    if not config["val_speakers"] and {"train", "test"} <= splits:
        return {name: [u for u in utts if u.labels.get("split") == name] for name in ("train", "val", "test")}
    train_utts, val_utts, _ = speaker_split(utts, config["val_speakers"] or None, config["val_fraction"], seed,
                                            stratify_label=config["utility"])
    return {"train": train_utts, "val": [], "test": val_utts}


def train(options: TrainOptions) -> dict:
    """`anoncli train --method siamese`: the contrastive extractor, then the utility head on frozen features.

    Returns the run folder, training seconds and the held-out test figures.
    """
    config = _resolve_config(options)
    limit_cpu_threads(config["threads"] or None)
    device = pick_device(options.device)
    run = RunFolder(options.out, config, overwrite=options.overwrite)
    gen = seed_everything(options.seed)

    corpus = options.open_corpus()
    utility = config["utility"]
    utts = [u for u in corpus.utterances if u.labels.get(utility)]
    if not utts:
        raise AnoncliError(f"{options.corpus}: no utterance has a {utility!r} label")
    parts = split_utterances(utts, config, options.seed)
    train_utts = parts["train"]
    classes = sorted({u.labels[utility] for u in train_utts})
    if len(classes) < 2:
        raise AnoncliError(f"the training speakers cover only one {utility} class ({classes[0] if classes else '-'})")
    y_train = np.asarray([classes.index(u.labels[utility]) for u in train_utts])
    speakers = sorted({str(u.speaker) for u in train_utts})
    # every speaker the run looked at (training and model selection): evaluation leaves them out
    seen_speakers = sorted(set(speakers) | {str(u.speaker) for u in parts["val"]})
    s_train = torch.tensor([speakers.index(str(u.speaker)) for u in train_utts])
    sr = config["sample_rate"]

    net = SiameseNet(config["groups"], config["width"], sr, norm=config["norm"], bottleneck=config["bottleneck"]).to(device)
    mfccs = load_mfccs(net, train_utts, config, "reading audio")
    hop = net.front.mfcc.MelSpectrogram.spectrogram.hop_length
    crop = int(round(config["crop_s"] * sr / hop))
    ce_head = UtilityHead(net.feature_dim, len(classes), config["head_hidden"]).to(device)
    adversary = SpeakerAdversary(net.feature_dim, len(speakers)).to(device)
    params = list(net.parameters()) + (list(ce_head.parameters()) if config["loss"] == "ce" else [])
    params += list(adversary.parameters()) if config["grl_weight"] > 0 else []
    opt = torch.optim.Adam(params, lr=config["lr"])
    head = UtilityHead(net.feature_dim, len(classes), config["head_hidden"]).to(device)
    head_opt = torch.optim.Adam(head.parameters(), lr=config["lr"])

    state = run.resume(device)
    start_epoch, start_head = 0, 0
    if state is not None:
        net.load_state_dict(state["net"]); ce_head.load_state_dict(state["ce_head"]); opt.load_state_dict(state["opt"])
        adversary.load_state_dict(state["adversary"])
        head.load_state_dict(state["head"]); head_opt.load_state_dict(state["head_opt"])
        start_epoch, start_head = int(state["epoch"]), int(state["head_epoch"])
        set_rng_state(state.get("rng")); gen.set_state(state["gen"])
        run.truncate_log(start_epoch + start_head)

    def checkpoint(epoch: int, head_epoch: int, best: bool = False) -> None:
        """Save extractor, heads, adversary, optimizers, epochs and RNG states as last.pt (and best.pt when `best`)."""
        run.save({
            "method": "siamese", "net": net.state_dict(), "ce_head": ce_head.state_dict(), "opt": opt.state_dict(),
            "adversary": adversary.state_dict(),
            "head": head.state_dict(), "head_opt": head_opt.state_dict(), "epoch": epoch, "head_epoch": head_epoch,
            "rng": rng_state(), "gen": gen.get_state(), "config": config, "classes": classes,
            "feature_dim": net.feature_dim, "train_speakers": seen_speakers,
        }, best=best)

    # Stage 1: the feature extractor.
    bs = config["batch_size"]
    t_start = time.time()
    for epoch in range(start_epoch, config["epochs"]):
        net.train(); ce_head.train(); adversary.train()
        weight = grl_weight(epoch, config["grl_warmup_epochs"], config["grl_ramp_epochs"], config["grl_weight"])
        t0, losses, adv_losses = time.time(), [], []
        a_idx, b_idx, diff = draw_pairs(y_train, config["pairs_per_epoch"], gen)
        for s in progress_bar(range(0, len(a_idx), bs), desc=f"siamese epoch {epoch + 1}/{config['epochs']}", leave=False, enabled=None, log_step_percent=100):
            sl = slice(s, s + bs)
            xa = torch.stack([random_crop(mfccs[i], crop, gen) for i in a_idx[sl]]).to(device)
            if config["loss"] == "contrastive":
                xb = torch.stack([random_crop(mfccs[i], crop, gen) for i in b_idx[sl]]).to(device)
                feats = add_feature_noise(net.embed_mfcc(torch.cat([xa, xb])), config["noise"], generator=gen)
                loss = contrastive_loss(feats[:len(xa)], feats[len(xa):], torch.from_numpy(diff[sl]).to(device), config["margin"])
                who = torch.cat([s_train[a_idx[sl]], s_train[b_idx[sl]]]).to(device)
            else:
                feats = add_feature_noise(net.embed_mfcc(xa), config["noise"], generator=gen)
                loss = F.cross_entropy(ce_head(feats), torch.from_numpy(y_train[a_idx[sl]]).to(device))
                who = s_train[a_idx[sl]].to(device)
            total = loss
            if config["grl_weight"] > 0:
                adv_loss = F.cross_entropy(adversary(feats, weight), who)
                total = loss + adv_loss
                adv_losses.append(float(adv_loss.detach()))
            opt.zero_grad(); total.backward(); opt.step()
            losses.append(float(loss.detach()))
        row = {"stage": "features", "epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.time() - t0}
        if adv_losses:
            row.update({"grl_weight": weight, "speaker_loss": float(np.mean(adv_losses))})
        run.log(row)
        checkpoint(epoch + 1, 0)

    # Stage 2: the utility head on frozen features of whole utterances.
    train_feats = torch.from_numpy(embed(net, mfccs, device, config["noise"], options.seed)).to(device)
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
    train_seconds = time.time() - t_start

    report = {name: _report(net, head, classes, parts[name], config, device, train_utts, mfccs)
              for name in ("val", "test") if parts[name]}
    card = {"method": "siamese", "corpus": str(Path(options.corpus).resolve()), "utility": utility,
            "classes": classes, "train_speakers": speakers, "n_train_utterances": len(train_utts),
            "val_speakers": sorted({str(u.speaker) for u in parts["val"]}),
            "held_out_speakers": sorted({str(u.speaker) for u in parts["test"]}), "config": config,
            "train_seconds": round(train_seconds, 1), "held_out": report.get("test", {}), "validation": report.get("val", {}),
            "paper": {"dataset": "TIMIT, 20 speakers", "gender_accuracy": 0.94, "attacker_speaker_id": 0.11, "chance": 0.10}}
    run.write_card(card)
    return {"run": str(run.root), "train_seconds": round(train_seconds, 1), **report.get("test", {}),
            **({"validation": report["val"]} if "val" in report else {})}


def _report(net, head, classes, utts, config, device, train_utts, train_mfccs) -> dict:
    """Held-out utterances: the model's own head (utility) and a speaker-ID attacker within each group.

    Groups are the values of the utility label combined with `attacker_groups`
    columns; the same attacker on plain MFCC statistics is the reference. When
    a group has a single held-out speaker (few-speaker corpora), the attacker
    is also run on the training and held-out speakers together, reported as
    `attacker_speaker_id_all_speakers` (optimistic: training speakers included).
    """
    utility = config["utility"]
    mfccs = load_mfccs(net, utts, config, "held-out audio")
    feats = embed(net, mfccs, device, config["noise"], config["seed"] + 1_000_000)
    head.eval()
    with torch.no_grad():
        pred = head(torch.from_numpy(feats).to(device)).argmax(1).cpu().numpy()
    truth = np.asarray([classes.index(u.labels[utility]) if u.labels[utility] in classes else -1 for u in utts])
    groups = [utility, *config["attacker_groups"]]
    out = {"utility_accuracy": float(np.mean(pred == truth)), "n_held_out": len(utts),
           "speakers": len({u.speaker for u in utts})}
    out["attacker_speaker_id"] = _attack_within(feats, utts, groups, config["seed"])
    out["attacker_on_mfcc_statistics"] = _attack_within(mfcc_statistics(mfccs), utts, groups, config["seed"])
    keys = {"/".join(str(u.labels.get(c, "")) for c in groups) for u in utts}
    if any(k not in out["attacker_speaker_id"] for k in keys):
        everyone = list(train_utts) + list(utts)
        all_feats = np.concatenate([embed(net, train_mfccs, device, config["noise"], config["seed"]), feats])
        out["attacker_speaker_id_all_speakers"] = _attack_within(all_feats, everyone, groups, config["seed"])
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
            result[value] = {"accuracy": probe["accuracy"], "chance": probe["chance"], "speakers": len(set(speakers)),
                             "n": len(idx)}
    if result:
        n = sum(v["n"] for v in result.values())
        result["mean"] = {"accuracy": sum(v["accuracy"] * v["n"] for v in result.values()) / n,
                          "chance": sum(v["chance"] * v["n"] for v in result.values()) / n, "n": n}
    return result
