"""`anoncli train --method rdalm`: speech-removal mask, then event features trained against a speech adversary.

Stage (a) trains the separation U-Net with L1 between mask × mixture magnitude
and the clean event magnitude (the `clean_event` column of the mixture
corpus, see `anoncli.mixtures`), then freezes it. Stage (b) trains the
feature extractor + event classifier on the log-mel of the masked magnitude;
a speech-presence discriminator sits behind a gradient-reversal layer whose
weight is 0 for `warmup_epochs`, then ramps up over `ramp_epochs`. Every
`refresh_every` epochs a fresh discriminator is trained on the frozen
features and its weights replace the adversary's (RDAL-M's periodic reset).
`adversary_hidden` sets the adversary's layers: the paper's 48-32-16, or
256 with `adversary_dropout` 0.3, the family of the evaluation attacker.
`disc_steps` extra adversary updates per batch (on detached features) and
`disc_standardize` (batch-normalised adversary input) are experiments, off by
default (docs/results.md). `--param adversary=false` trains the non-private baseline (same schedule,
weight always 0). `--param unet_from=RUN` reuses another run's stage (a).

Only items whose `split` label is not "test" are used; a `val_fraction` of
the training event sources (column `event_source_id`) is held out for
validation figures. The report (model.json `held_out`, and `validation`) gives
event accuracy, the speech attacker retrained from scratch on the frozen
embeddings of the held-out mixtures (cross-validated: the figure `anoncli
evaluate` reports) and the mask's SDR. The private label is `speech` (yes/no)
or the older `speech_present` (1/0).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from anoncli.progress import progress_bar

from anoncli.audio import read_audio, resample
from anoncli.errors import AnoncliError
from anoncli.models.rdalm_nets import RdalmPipeline, SpeechDiscriminator, grad_reverse, grl_weight
from anoncli.modelstore import find, load_checkpoint
from anoncli.scoring.probe import cross_validated_probe
from anoncli.scoring.signal_metrics import sdr_db
from anoncli.training import TrainOptions
from anoncli.training.common import (
    RunFolder, resolve_run_config, limit_cpu_threads, pick_device,
    rng_state, seed_everything, set_rng_state,
)

PRESETS = {
    # CPU-sized: quarter widths, epochs and reset period P scaled down ~6x from the paper.
    "quick": {"sample_rate": 16000, "n_fft": 512, "hop": 128, "clip_s": 2.0, "unet_width": 0.25,
              "extractor_width": 0.25, "embedding": 64, "unet_epochs": 12, "epochs": 40, "warmup_epochs": 5,
              "ramp_epochs": 10, "max_grl_weight": 1.0, "refresh_every": 10, "refresh_epochs": 30,
              "batch_size": 16, "lr": 1e-3, "adversary": True, "disc_steps": 0, "disc_standardize": False, "unet_from": "", "threads": 1,
              "adversary_hidden": [48, 32, 16], "adversary_dropout": 0.0, "val_fraction": 0.0},
    # The paper's sizes: full widths, GRL weight 0 for 30 epochs, reset every P = 60 epochs.
    "full": {"sample_rate": 16000, "n_fft": 1024, "hop": 256, "clip_s": 4.0, "unet_width": 1.0,
             "extractor_width": 1.0, "embedding": 64, "unet_epochs": 100, "epochs": 300, "warmup_epochs": 30,
             "ramp_epochs": 30, "max_grl_weight": 1.0, "refresh_every": 60, "refresh_epochs": 100,
             "batch_size": 32, "lr": 1e-3, "adversary": True, "disc_steps": 0, "disc_standardize": False, "unet_from": "", "threads": 0,
             "adversary_hidden": [48, 32, 16], "adversary_dropout": 0.0, "val_fraction": 0.0},
}


def _fit_length(wave: torch.Tensor, n: int) -> torch.Tensor:
    return wave[:n] if len(wave) >= n else F.pad(wave, (0, n - len(wave)))


def _load(path: Path, sr: int) -> torch.Tensor:
    audio = read_audio(path)
    return resample(torch.from_numpy(audio.samples), audio.sample_rate, sr)


def load_items(corpus_root, utterances, config, need_event: bool = True):
    """Mixture waves, clean-event waves, event labels and speech-presence labels, all clipped to clip_s."""
    n = int(config["clip_s"] * config["sample_rate"])
    mixes, events = [], []
    for utt in progress_bar(utterances, desc="reading mixtures", leave=False, enabled=None):
        mixes.append(_fit_length(_load(utt.path, config["sample_rate"]), n))
        if need_event:
            rel = utt.labels.get("clean_event")
            if not rel:
                raise AnoncliError(f"{utt.rel_path}: no clean_event label (make the corpus with anoncli.tools.make_mixtures)")
            events.append(_fit_length(_load(Path(corpus_root) / rel, config["sample_rate"]), n))
    return torch.stack(mixes), (torch.stack(events) if need_event else None)


def speech_labels(utterances, column: str = "speech") -> np.ndarray:
    """(N,) float 1/0 speech presence from `column` ("yes"/"no", 1/0, true/false); falls back to the
    older `speech_present` column."""
    values = [str(u.labels.get(column) or u.labels.get("speech_present") or "0").strip().lower() for u in utterances]
    return np.asarray([v in ("1", "true", "yes") for v in values], dtype=np.float32)


def make_discriminator(config: dict) -> SpeechDiscriminator:
    """The speech-presence adversary configured by `embedding`, `disc_standardize`, `adversary_hidden` and `adversary_dropout`."""
    return SpeechDiscriminator(config["embedding"], config["disc_standardize"],
                               tuple(int(h) for h in config["adversary_hidden"]), float(config["adversary_dropout"]))


def validation_split(utterances, fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a `fraction` of the event sources (event_source_id, else event_source) held out."""
    if fraction <= 0:
        return list(utterances), []
    key = [str(u.labels.get("event_source_id") or u.labels.get("event_source") or u.utt_id) for u in utterances]
    sources = sorted(set(key))
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(sources)[:max(1, int(round(fraction * len(sources))))].tolist())
    return ([u for u, k in zip(utterances, key) if k not in chosen], [u for u, k in zip(utterances, key) if k in chosen])


def _resolve_config(options: TrainOptions) -> dict:
    config = resolve_run_config(PRESETS, options)
    config["utility"] = options.utility or "event"
    config["attribute"] = options.attribute or "speech"
    config["seed"] = options.seed
    return config


def train(options: TrainOptions) -> dict:
    """`anoncli train --method rdalm`: stage (a) the separation mask, stage (b) event features against a speech adversary.

    Returns the run folder, training seconds and the validation figures.
    """
    config = _resolve_config(options)
    limit_cpu_threads(config["threads"] or None)
    device = pick_device(options.device)
    run = RunFolder(options.out, config, overwrite=options.overwrite)
    gen = seed_everything(options.seed)
    corpus = options.open_corpus()
    utility = config["utility"]
    all_utts = [u for u in corpus.utterances if u.labels.get(utility)]
    train_utts = [u for u in all_utts if (u.labels.get("split") or "train") != "test"]
    test_utts = [u for u in all_utts if (u.labels.get("split") or "train") == "test"]
    train_utts, val_utts = validation_split(train_utts, config["val_fraction"], options.seed)
    if len(train_utts) < 4:
        raise AnoncliError(f"{options.corpus}: too few training mixtures with a {utility!r} label ({len(train_utts)})")
    classes = sorted({u.labels[utility] for u in train_utts})
    y_event = torch.tensor([classes.index(u.labels[utility]) for u in train_utts])
    y_speech = torch.from_numpy(speech_labels(train_utts, config["attribute"]))

    pipe = RdalmPipeline(config["sample_rate"], config["n_fft"], config["hop"], config["unet_width"],
                         config["extractor_width"], config["embedding"], len(classes)).to(device)
    disc = make_discriminator(config).to(device)
    unet_opt = torch.optim.Adam(pipe.unet.parameters(), lr=config["lr"])
    feat_params = list(pipe.extractor.parameters()) + list(pipe.classifier.parameters())
    opt = torch.optim.Adam(feat_params, lr=config["lr"])
    disc_opt = torch.optim.Adam(disc.parameters(), lr=config["lr"])
    unet_epoch, epoch0 = 0, 0
    state = run.resume(device)
    if state is not None:
        pipe.load_state_dict(state["pipeline"]); disc.load_state_dict(state["disc"])
        unet_opt.load_state_dict(state["unet_opt"]); opt.load_state_dict(state["opt"]); disc_opt.load_state_dict(state["disc_opt"])
        unet_epoch, epoch0 = int(state["unet_epoch"]), int(state["epoch"])
        set_rng_state(state.get("rng")); gen.set_state(state["gen"])
        run.truncate_log(unet_epoch + epoch0)

    def checkpoint(best: bool = False) -> None:
        """Save pipeline, adversary, optimizers, stage counters and RNG states as last.pt (and best.pt when `best`)."""
        run.save({"method": "rdalm", "pipeline": pipe.state_dict(), "disc": disc.state_dict(), "unet_opt": unet_opt.state_dict(),
                  "opt": opt.state_dict(), "disc_opt": disc_opt.state_dict(), "unet_epoch": unet_epoch,
                  "epoch": epoch0, "rng": rng_state(), "gen": gen.get_state(), "config": config, "classes": classes},
                 best=best)

    bs = config["batch_size"]
    t_start = time.time()
    mixes, events = None, None
    if config["unet_from"] and unet_epoch == 0:
        other = load_checkpoint(find("rdalm", config["unet_from"]), device)
        pipe.unet.load_state_dict({k[5:]: v for k, v in other["pipeline"].items() if k.startswith("unet.")})
        unet_epoch = config["unet_epochs"]
        checkpoint()
    if unet_epoch < config["unet_epochs"]:
        mixes, events = load_items(corpus.root, train_utts, config)
        with torch.no_grad():
            mix_mag = pipe.spec.stft(mixes).abs().unsqueeze(1)
            event_mag = pipe.spec.stft(events).abs().unsqueeze(1)
    # Stage (a): separation mask.
    while unet_epoch < config["unet_epochs"]:
        pipe.unet.train()
        t0, losses = time.time(), []
        order = torch.randperm(len(mix_mag), generator=gen)
        for s in progress_bar(range(0, len(order), bs), desc=f"u-net epoch {unet_epoch + 1}/{config['unet_epochs']}", leave=False, enabled=None, log_step_percent=100):
            idx = order[s:s + bs]
            m, e = mix_mag[idx].to(device), event_mag[idx].to(device)
            loss = F.l1_loss(pipe.unet(m) * m, e)
            unet_opt.zero_grad(); loss.backward(); unet_opt.step()
            losses.append(float(loss.detach()))
        unet_epoch += 1
        run.log({"stage": "separation", "epoch": unet_epoch, "l1": float(np.mean(losses)), "seconds": time.time() - t0})
        checkpoint()

    # Stage (b): cache the frozen mask's log-mels once, then adversarial feature learning.
    pipe.unet.eval()
    if mixes is None:
        mixes, _ = load_items(corpus.root, train_utts, config, need_event=False)
    with torch.no_grad():
        inputs = torch.cat([pipe.logmel(pipe.masked(mixes[s:s + bs].to(device))[0]).cpu() for s in range(0, len(mixes), bs)])
    total = config["unet_epochs"]
    while epoch0 < config["epochs"]:
        epoch = epoch0
        reset = bool(config["adversary"] and epoch > 0 and epoch % config["refresh_every"] == 0)
        if reset:
            disc = _fresh_discriminator(pipe, inputs, y_speech, config, device, gen)
            disc_opt = torch.optim.Adam(disc.parameters(), lr=config["lr"])
        weight = grl_weight(epoch, config["warmup_epochs"], config["ramp_epochs"], config["max_grl_weight"]) if config["adversary"] else 0.0
        pipe.extractor.train(); pipe.classifier.train(); disc.train()
        order = torch.randperm(len(inputs), generator=gen)
        stats = {"event_loss": [], "speech_loss": [], "event_acc": [], "speech_acc": []}
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            if len(idx) < 2:   # batch norm needs two items; a lone leftover item waits for the next epoch
                continue
            x, ye, ys = inputs[idx].to(device), y_event[idx].to(device), y_speech[idx].to(device)
            z = pipe.extractor(x)
            # extra adversary updates on detached features keep it ahead of the extractor
            for _ in range(config["disc_steps"] if weight > 0 else 0):
                disc_opt.zero_grad()
                F.binary_cross_entropy_with_logits(disc(z.detach()), ys).backward()
                disc_opt.step()
            logits = pipe.classifier(z)
            event_loss = F.cross_entropy(logits, ye)
            speech_logit = disc(grad_reverse(z, weight))
            speech_loss = F.binary_cross_entropy_with_logits(speech_logit, ys)
            opt.zero_grad(); disc_opt.zero_grad()
            (event_loss + speech_loss).backward()
            opt.step(); disc_opt.step()
            stats["event_loss"].append(float(event_loss.detach())); stats["speech_loss"].append(float(speech_loss.detach()))
            stats["event_acc"].append(float((logits.argmax(1) == ye).float().mean()))
            stats["speech_acc"].append(float(((speech_logit > 0).float() == ys).float().mean()))
        epoch0 += 1
        run.log({"stage": "features", "epoch": total + epoch0, "grl_weight": weight, "adversary_reset": reset,
                 **{k: float(np.mean(v)) for k, v in stats.items()}})
        checkpoint(best=epoch0 == config["epochs"])

    train_seconds = time.time() - t_start
    summary = _report(pipe, corpus.root, test_utts, classes, config, device)
    validation = _report(pipe, corpus.root, val_utts, classes, config, device) if val_utts else {}
    run.write_card({"method": "rdalm", "corpus": str(Path(options.corpus).resolve()), "utility": utility,
                    "attribute": config["attribute"], "classes": classes, "config": config,
                    "n_train": len(train_utts), "n_val": len(val_utts), "n_test": len(test_utts), "held_out": summary,
                    "train_speakers": sorted({str(u.speaker) for u in train_utts + val_utts if u.speaker}),
                    "held_out_speakers": sorted({str(u.speaker) for u in test_utts if u.speaker}),
                    "train_event_sources": sorted({str(u.labels.get("event_source_id") or "") for u in train_utts + val_utts} - {""}),
                    "held_out_event_sources": sorted({str(u.labels.get("event_source_id") or "") for u in test_utts} - {""}),
                    "validation": validation, "train_seconds": round(train_seconds, 1),
                    "paper": {"event_accuracy": 0.86, "speech_attacker_accuracy": 0.50, "speech_attacker_auc": 0.50}})
    return {"run": str(run.root), "train_seconds": round(train_seconds, 1), **summary,
            **({"validation": validation} if validation else {})}


def _fresh_discriminator(pipe, inputs, y_speech, config, device, gen) -> SpeechDiscriminator:
    """A new discriminator trained on frozen features; it becomes the adversary (RDAL-M's reset)."""
    pipe.extractor.eval()
    with torch.no_grad():
        feats = torch.cat([pipe.extractor(inputs[s:s + 64].to(device)) for s in range(0, len(inputs), 64)])
    disc = make_discriminator(config).to(device)
    opt = torch.optim.Adam(disc.parameters(), lr=config["lr"])
    ys = y_speech.to(device)
    for _ in range(config["refresh_epochs"]):
        order = torch.randperm(len(feats), generator=gen)
        for s in range(0, len(order), config["batch_size"]):
            idx = order[s:s + config["batch_size"]].to(device)
            if len(idx) < 2:
                continue
            loss = F.binary_cross_entropy_with_logits(disc(feats[idx]), ys[idx])
            opt.zero_grad(); loss.backward(); opt.step()
    return disc


def _report(pipe, corpus_root, test_utts, classes, config, device) -> dict:
    """Held-out mixtures: event accuracy, speech attacker on the embeddings (CV), mean SDR of the mask."""
    if len(test_utts) < 10:
        return {}
    pipe.eval()
    mixes, events = load_items(corpus_root, test_utts, config)
    feats, correct, sdrs = [], [], []
    with torch.no_grad():
        for utt, mix, event in zip(test_utts, mixes, events):
            z = pipe.embed(mix.to(device))
            feats.append(z.cpu().numpy())
            label = utt.labels[config["utility"]]
            correct.append(label in classes and int(pipe.classifier(z[None]).argmax()) == classes.index(label))
            sdrs.append(sdr_db(event.numpy(), pipe.suppress(mix.to(device)).cpu().numpy()))
    ys = speech_labels(test_utts, config["attribute"])
    out = {"event_accuracy": float(np.mean(correct)), "sdr_db_mean": float(np.mean(sdrs)), "n_test": len(test_utts)}
    if 0 < ys.sum() < len(ys):
        probe = cross_validated_probe(np.stack(feats), ys.astype(int), seed=config["seed"])
        out.update({"speech_attacker_accuracy": probe["accuracy"], "speech_attacker_auc": probe["auc"],
                    "speech_attacker_chance": probe["chance"]})
    return out
