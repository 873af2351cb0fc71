"""A small ECAPA-TDNN speaker encoder trained on CPU: `anoncli train --method asv`.

speechbrain's `ECAPA_TDNN` lobe on `Fbank` features (sentence-level mean
normalisation), trained as a speaker classifier with additive angular margin
softmax (AAM, margin 0.2, scale 30) on random 2-s crops. The classifier is
thrown away; the 192-d embedding is what `evaluate --asv-model RUN` uses.
Trained on an anonymized output it is VoicePrivacy's *semi-informed* attacker.

The run folder holds model.pt (encoder state dict), model.json (config),
checkpoint.pt (resume point, removed when finished) and log.parquet.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from anoncli.errors import AnoncliError, InputError
from anoncli.scoring.embeddings import ECAPA_MODEL_KIND as MODEL_KIND
from anoncli.scoring.embeddings import SpeakerEncoder
from anoncli.scoring.features import load_16k
from anoncli.atomic import atomic_write_json
from anoncli.training.common import atomic_torch_save

QUICK = {"epochs": 10, "batch_size": 32, "crop_s": 1.5, "lr": 2e-3, "n_mels": 40,
         "channels": [128, 128, 128, 128, 384], "lin_neurons": 128, "margin": 0.2, "scale": 30.0}
FULL = {**QUICK, "epochs": 60, "crop_s": 2.0, "lr": 1e-3, "channels": [512, 512, 512, 512, 1536], "n_mels": 80, "lin_neurons": 192}
RATE = 16000


def _config(options) -> dict:
    config = dict(FULL if options.config == "full" else QUICK)
    if options.config and options.config not in ("quick", "full"):
        try:
            config.update(json.loads(Path(options.config).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"--config {options.config}: cannot read a JSON config ({err})") from None
    if options.epochs:
        config["epochs"] = options.epochs
    if options.batch_size:
        config["batch_size"] = options.batch_size
    for key, value in options.extra.items():
        if key not in config:
            raise AnoncliError(f"--param {key}: unknown setting for asv (known: {', '.join(sorted(config))})")
        config[key] = type(config[key])(value) if not isinstance(config[key], list) else json.loads(value)
    return config


def _crop_batch(waves, labels, indices, crop: int, rng):
    import torch

    batch = np.zeros((len(indices), crop), dtype=np.float32)
    for row, i in enumerate(indices):
        wave = waves[i]
        if len(wave) > crop:
            start = rng.integers(0, len(wave) - crop)
            batch[row] = wave[start:start + crop]
        else:  # short utterance: repeat it to fill the crop
            batch[row] = np.resize(wave, crop)
    return torch.from_numpy(batch), torch.as_tensor(labels[indices], dtype=torch.long)



def train_asv(options) -> dict:
    """`anoncli train --method asv`: a small ECAPA-TDNN speaker encoder (AAM softmax, margin 0.2, scale 30) on random 2-s crops.

    Returns the run folder and counts of speakers, utterances and epochs; the run
    is usable as `evaluate --asv-model RUN`.
    """
    import torch
    from speechbrain.lobes.models.ECAPA_TDNN import Classifier
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
    from anoncli.progress import progress_bar

    from anoncli.seeding import derive_seed

    out = Path(options.out)
    if (out / "model.pt").exists() and not options.overwrite:
        raise AnoncliError(f"{out}: already holds a trained encoder (use --overwrite to train again)")
    config = _config(options)
    corpus = options.open_corpus()
    keep = [u for u in corpus.utterances if u.speaker is not None]
    speakers = sorted({u.speaker for u in keep})
    if len(speakers) < 2:
        raise InputError(f"{options.corpus}: --method asv needs a speaker label with at least 2 speakers")
    torch.set_num_threads(1 if options.device == "cpu" else torch.get_num_threads())
    torch.manual_seed(derive_seed(options.seed, "asv-init") % (2**31))
    rng = np.random.default_rng(derive_seed(options.seed, "asv-crops"))
    waves = [load_16k(u.path)[0] for u in progress_bar(keep, desc="loading", leave=False)]
    labels = np.array([speakers.index(u.speaker) for u in keep])

    encoder = SpeakerEncoder(config, options.device)
    classifier = Classifier(config["lin_neurons"], out_neurons=len(speakers)).to(options.device)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=config["margin"], scale=config["scale"]))
    params = list(encoder.model.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.Adam(params, lr=config["lr"], weight_decay=2e-5)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    log_rows, start_epoch = [], 0
    if checkpoint.is_file() and not options.overwrite:
        state = torch.load(checkpoint, map_location=options.device, weights_only=True)
        encoder.model.load_state_dict(state["encoder"])
        classifier.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        log_rows = json.loads((out / ".log.json").read_text()) if (out / ".log.json").is_file() else []
        print(f"asv: resuming at epoch {start_epoch + 1}", file=sys.stderr)
    crop = int(config["crop_s"] * RATE)
    started = time.time()
    for epoch in range(start_epoch, config["epochs"]):
        encoder.model.train()
        order = rng.permutation(len(waves))
        losses, correct = [], 0
        t0 = time.time()
        for start in range(0, len(order), config["batch_size"]):
            x, y = _crop_batch(waves, labels, order[start:start + config["batch_size"]], crop, rng)
            y = y.to(options.device)
            outputs = classifier(encoder(x).unsqueeze(1))
            loss = loss_fn(outputs, y.unsqueeze(1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            correct += int((outputs.squeeze(1).argmax(1) == y).sum())
        log_rows.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_acc": correct / len(order),
                         "seconds": time.time() - t0})
        print(f"asv: epoch {epoch + 1}/{config['epochs']} loss {log_rows[-1]['loss']:.3f} "
              f"acc {log_rows[-1]['train_acc']:.2f} ({log_rows[-1]['seconds']:.0f} s)", file=sys.stderr)
        atomic_torch_save({"encoder": encoder.model.state_dict(), "classifier": classifier.state_dict(),
                            "optimizer": optimizer.state_dict(), "epoch": epoch + 1}, checkpoint)
        (out / ".log.json").write_text(json.dumps(log_rows))
    atomic_torch_save(encoder.model.state_dict(), out / "model.pt")
    model_json = {"kind": MODEL_KIND, **config, "sample_rate": RATE, "speakers": speakers,
                  "corpus": str(corpus.root.resolve()), "n_utterances": len(keep), "seed": options.seed}
    atomic_write_json(out / "model.json", model_json)
    import pandas as pd

    pd.DataFrame(log_rows).to_parquet(out / "log.parquet", index=False)
    checkpoint.unlink(missing_ok=True)
    (out / ".log.json").unlink(missing_ok=True)
    return {"out": str(out), "speakers": len(speakers), "utterances": len(keep), "epochs": config["epochs"],
            "final_loss": log_rows[-1]["loss"] if log_rows else None, "seconds": round(time.time() - started, 1)}
