"""`anoncli train --method melgan`: a MelGAN vocoder for the working-rate log-mel.

Generator and multi-scale discriminator as in melgan-neurips
(anoncli.synthesis.melgan); hinge loss, feature matching x10, Adam 1e-4
beta (0.5, 0.9). Training pairs are random `segment` -sample crops of the
training speakers' audio and their LogMel; validation is copy-synthesis of
held-out speakers' whole utterances, scored with STOI (the model selection
criterion, best.pt).

The `quick` preset adds an L1 loss between the mel of the output and the
input mel (weight `mel_weight`, as HiFi-GAN does): without it a few minutes
of CPU training give noise; the `full` preset is the paper's recipe (no mel
loss). A checkpoint is written after every epoch (`steps_per_epoch` steps,
0 = one pass over the training audio), so a killed run resumes from the
last finished epoch.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F
from anoncli import progress
from anoncli.progress import progress_bar

from anoncli.errors import AnoncliError
from anoncli.synthesis.mel import LogMel
from anoncli.synthesis.melgan import Generator, MultiScaleDiscriminator
from anoncli.training import TrainOptions
from anoncli.training.common import (
    RunFolder, resolve_run_config, atomic_torch_save, limit_cpu_threads, load_waves, pick_device, rng_state,
    seed_everything, set_rng_state, speaker_split,
)

PRESETS = {
    # 400 steps, about half an hour on 2 busy CPU cores: the loss goes down and the
    # validation STOI up (0.65 after 350 steps on emodb-dev), not a usable vocoder.
    # The discriminator's widest layers are capped at 256 channels (the paper: 1024,
    # 16 M parameters and a 200 MB checkpoint with Adam's moments).
    "quick": {"sample_rate": 16000, "segment": 8192, "batch_size": 4, "epochs": 8, "steps_per_epoch": 50,
              "lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "fm_weight": 10.0, "mel_weight": 45.0,
              "ngf": 32, "n_residual_layers": 3, "ndf": 16, "d_layers": 4, "d_downsampling": 4, "d_scales": 3,
              "d_max_channels": 256, "val_fraction": 0.2, "val_speakers": [], "val_files": 8,
              "max_minutes": 0.0, "threads": 1, "register": False},
    # The paper's recipe (melgan-neurips: batch 16, segment 8192, no mel loss), for a GPU:
    # 200 k steps, validated every 500.
    "full": {"sample_rate": 16000, "segment": 8192, "batch_size": 16, "epochs": 400, "steps_per_epoch": 500,
             "lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "fm_weight": 10.0, "mel_weight": 0.0,
             "ngf": 32, "n_residual_layers": 3, "ndf": 16, "d_layers": 4, "d_downsampling": 4, "d_scales": 3,
             "d_max_channels": 1024, "val_fraction": 0.2, "val_speakers": [], "val_files": 24,
             "max_minutes": 0.0, "threads": 0, "register": False},
}


def resolve_config(options: TrainOptions) -> dict:
    """The preset with `--param` overrides and the seed; raises AnoncliError unless `segment` is a multiple of 256 samples, at least 1024."""
    config = resolve_run_config(PRESETS, options)
    hop = 256
    if config["segment"] < hop * 4 or config["segment"] % hop:
        raise AnoncliError(f"--param segment={config['segment']}: expected a multiple of {hop}, at least {hop * 4}")
    config["seed"] = options.seed
    return config


def random_segments(waves: list[torch.Tensor], count: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """(count, length) crops from random utterances; short utterances are zero-padded."""
    batch = torch.zeros(count, length)
    for row in range(count):
        wave = waves[int(torch.randint(len(waves), (1,), generator=gen))]
        if len(wave) > length:
            start = int(torch.randint(len(wave) - length + 1, (1,), generator=gen))
            batch[row] = wave[start:start + length]
        else:
            batch[row, :len(wave)] = wave
    return batch


def soft_logmel(mel: LogMel, wave: torch.Tensor) -> torch.Tensor:
    """log10(mel + 1e-5): LogMel's clamp would give a near-silent output no gradient at all."""
    return torch.log10(mel.mel_scale(mel.magnitude_stft(wave)) + 1e-5)


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge loss summed over scales on the final layer outputs."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))


def generator_losses(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial hinge loss, feature-matching L1 averaged over the scales' hidden layers)."""
    adversarial = sum(-f[-1].mean() for f in fake)
    matching = [F.l1_loss(f_layer, r_layer.detach()) for r, f in zip(real, fake)
                for r_layer, f_layer in zip(r[:-1], f[:-1])]
    return adversarial, torch.stack(matching).mean()


@torch.no_grad()
def validate(generator: Generator, mel: LogMel, waves: list[torch.Tensor], device: torch.device) -> dict:
    """Copy-synthesis of whole held-out utterances: mean STOI and mel L1."""
    from pystoi import stoi

    generator.eval()
    scores, mel_errors = [], []
    for wave in waves:
        logmel = mel(wave[None].to(device))
        out = generator(logmel)[0, 0, :wave.shape[-1]]
        mel_errors.append(float(F.l1_loss(mel(out[None]), logmel)))
        scores.append(float(stoi(wave.numpy().astype(np.float64), out.cpu().numpy().astype(np.float64), mel.sample_rate)))
    generator.train()
    return {"val_stoi": float(np.mean(scores)), "val_mel_l1": float(np.mean(mel_errors))}


def spread(items: list, limit: int) -> list:
    """At most `limit` items spread evenly over the list (all of them when `limit` is 0 or not reached)."""
    if not limit or len(items) <= limit:
        return items
    return [items[int(i * len(items) / limit)] for i in range(limit)]


def train_melgan(options: TrainOptions) -> dict:
    """Train (or resume) a MelGAN vocoder at the working rate; keeps the epoch with the best validation STOI.

    Returns the run summary (run folder, best epoch, its STOI, steps, ...). Raises
    AnoncliError for a corpus without audio or a bad configuration.
    """
    config = resolve_config(options)
    limit_cpu_threads(config["threads"] or None)
    device = pick_device(options.device)
    # The corpus is checked before RUN is created, so a bad corpus leaves no empty run behind.
    corpus = options.open_corpus()
    if not corpus.utterances:
        raise AnoncliError(f"{options.corpus}: no audio files")
    train_utts, val_utts, val_speakers = speaker_split(
        corpus.utterances, config["val_speakers"] or None, config["val_fraction"], options.seed)
    # Settings that only say how long or where to run may change when resuming.
    resumable = [k for k in config if k not in ("epochs", "max_minutes", "threads", "register")]
    run = RunFolder(options.out, config, overwrite=options.overwrite, resume_keys=resumable)
    gen = seed_everything(options.seed)
    rate = config["sample_rate"]
    train_waves = load_waves(train_utts, rate, "reading training audio")
    val_waves = load_waves(spread(val_utts, config["val_files"]), rate, "reading validation audio")

    mel = LogMel(sample_rate=rate).to(device)
    generator = Generator(mel.n_mels, config["ngf"], config["n_residual_layers"]).to(device)
    discriminator = MultiScaleDiscriminator(config["d_scales"], config["ndf"], config["d_layers"],
                                            config["d_downsampling"], config["d_max_channels"]).to(device)
    betas = (config["beta1"], config["beta2"])
    opt_g = torch.optim.Adam(generator.parameters(), lr=config["lr"], betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config["lr"], betas=betas)

    start_epoch, step, best_stoi, best_epoch = 0, 0, -1.0, -1
    state = run.resume(device)
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        best_stoi, best_epoch = float(state["best_stoi"]), int(state["best_epoch"])
        set_rng_state(state.get("rng"))
        gen.set_state(state["data_rng"])
        run.truncate_log(start_epoch)

    def checkpoint(epoch: int, best: bool) -> None:
        """Save networks, optimizers, counters and RNG states as last.pt (and best.pt when `best`)."""
        run.save({
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "epoch": epoch, "step": step,
            "best_stoi": best_stoi, "best_epoch": best_epoch, "rng": rng_state(), "data_rng": gen.get_state(),
            "config": {"sample_rate": rate, **generator.architecture()},
        }, best=best)

    steps_per_epoch = config["steps_per_epoch"] or max(1, len(train_waves) // config["batch_size"])
    started = time.time()
    generator.train()
    for epoch in range(start_epoch + 1, config["epochs"] + 1):
        sums = {"loss_d": 0.0, "loss_adv": 0.0, "loss_fm": 0.0, "loss_mel": 0.0}
        bar = progress_bar(range(steps_per_epoch), desc=f"melgan epoch {epoch}/{config['epochs']}", leave=False, enabled=None, log_step_percent=100)
        for _ in bar:
            real = random_segments(train_waves, config["batch_size"], config["segment"], gen).to(device)
            logmel = mel(real)
            fake = generator(logmel)[..., :real.shape[-1]]
            real = real.unsqueeze(1)

            opt_d.zero_grad(set_to_none=True)
            loss_d = discriminator_loss(discriminator(real), discriminator(fake.detach()))
            loss_d.backward()
            opt_d.step()

            opt_g.zero_grad(set_to_none=True)
            adversarial, matching = generator_losses(discriminator(real), discriminator(fake))
            loss_g = adversarial + config["fm_weight"] * matching
            loss_mel = F.l1_loss(soft_logmel(mel, fake.squeeze(1)), soft_logmel(mel, real.squeeze(1)))
            if config["mel_weight"]:
                loss_g = loss_g + config["mel_weight"] * loss_mel
            loss_g.backward()
            opt_g.step()

            step += 1
            values = {"loss_d": loss_d.item(), "loss_adv": adversarial.item(), "loss_fm": matching.item(),
                      "loss_mel": loss_mel.item()}
            for key, value in values.items():
                sums[key] += value
            bar.set_postfix({k[5:]: f"{v:.3f}" for k, v in values.items()})
        means = {k: v / steps_per_epoch for k, v in sums.items()}
        figures = validate(generator, mel, val_waves, device) if val_waves else {"val_stoi": float("nan")}
        best = figures["val_stoi"] > best_stoi or best_epoch < 0
        if best:
            best_stoi, best_epoch = figures["val_stoi"], epoch
        checkpoint(epoch, best)
        run.log({"epoch": epoch, "step": step, **means, **figures, "elapsed_s": time.time() - started})
        progress.write(f"melgan epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in {**means, **figures}.items()))
        if config["max_minutes"] and time.time() - started > 60 * config["max_minutes"]:
            progress.write(f"melgan: stopping after epoch {epoch}, max_minutes={config['max_minutes']} reached "
                       "(run the same command with more minutes to continue)")
            break

    summary = _finish(run, options, config, corpus, train_utts, val_utts, val_speakers, best_stoi, best_epoch, step)
    return summary


def _finish(run: RunFolder, options, config, corpus, train_utts, val_utts, val_speakers,
            best_stoi: float, best_epoch: int, step: int) -> dict:
    """Export the best generator as a plain melgan-neurips state dict, write the card, register."""
    best = torch.load(run.best_path, map_location="cpu", weights_only=True)
    atomic_torch_save(best["generator"], run.root / "generator.pt")
    card = {
        "method": "melgan", "kind": "vocoder",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"corpus": str(corpus.root.resolve()), "files": len(corpus.utterances),
                 "train_files": len(train_utts), "val_files": len(val_utts),
                 "train_speakers": sorted({u.speaker for u in train_utts}), "val_speakers": val_speakers},
        "config": config, "sample_rate": config["sample_rate"],
        "mel": "anoncli.synthesis.mel.LogMel (n_fft 1024, hop 256, 80 Slaney mels, log10 magnitude)",
        "validation": {"best_epoch": best_epoch, "stoi": best_stoi, "criterion": "copy-synthesis STOI"},
        "steps": step,
        "files": {"checkpoint": "checkpoints/best.pt",
                  "generator": "generator.pt (plain state dict, melgan-neurips keys)"},
    }
    run.write_card(card)
    registered = None
    if config.get("register"):
        from anoncli import modelstore

        registered = str(modelstore.register("melgan", run.root))
    return {"run": str(run.root), "best_epoch": best_epoch, "val_stoi": best_stoi, "steps": step,
            "registered": registered}
