"""1-D generators that learn a bounded residual on normalised compact WORLD features (`world_gan` models).

The features (`FEATURES`, per 5 ms frame, `anoncli.synthesis.world_features`
after the explicit normalisation of `anoncli.synthesis.world_norm`): the 40
coded envelope coefficients, log-F0 (0 where unvoiced), voicing (0/1), the
coded band aperiodicity (1 band at 16 kHz) and the frame level relative to
the utterance's loudest frame (dB / 10). A generator reads them as (B, C, T),
standardised with the model's `mean`/`std` buffers, with `cond` class
channels (the drawn target class, one-hot, constant over time) and, for
GenGAN, a noise channel; it returns the features with a residual added to
the first `CHANGED` channels (envelope, log-F0, aperiodicity):

    out = x + std * bound * tanh(head(h)),    head zero-initialised,

so an untrained generator is the identity (training starts at the
normalised output) and no frame moves by more than `bound` standard
deviations (log-F0: `f0_bound`), whatever the training does (the
intelligibility budget: moving F0 costs STOI most).
Voicing and level pass through unchanged.

Three bodies, after the papers' generators, made 1-D over time:

* `gengan` (Stoidis & Cavallaro, 2022): a U-Net (two stride-2 levels, skip
  connections) fed a seeded noise channel;
* `pcmelgan` (Ericsson et al., 2020): a residual convolution stack
  conditioned on the sampled class (its "generator"; the explicit
  normalisation is its "filter");
* `psegan` (Ren et al.): gated dilated convolutions (dilations 1, 2, 4, 8), a
  WaveNet-style bottleneck.
"""

from __future__ import annotations

import torch
from torch import nn

N_MCEP = 40
# channel order of the frame features: envelope, log-F0, voicing, aperiodicity, level
FEATURES = N_MCEP + 4
LOG_F0, VOICED, BAP, LEVEL = N_MCEP, N_MCEP + 1, N_MCEP + 2, N_MCEP + 3
# the generator's residual covers channels [0, CHANGED) except voicing: envelope, log-F0 (and, after it, aperiodicity)
CHANGED_INDEX = list(range(N_MCEP + 1)) + [BAP]
BODIES = ("gengan", "pcmelgan", "psegan")


def noise_channel(seed: int, frames: int) -> torch.Tensor:
    """(1, 1, frames) standard normal noise drawn from `seed` alone (GenGAN's noise map, per utterance)."""
    gen = torch.Generator().manual_seed(int(seed) & ((1 << 63) - 1))
    return torch.randn(1, 1, frames, generator=gen)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 5, stride=stride, padding=2 * dilation, dilation=dilation)
        self.norm = nn.GroupNorm(1, cout)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class _GatedBlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(b))


class WorldResidualGenerator(nn.Module):
    """A bounded residual on (B, FEATURES, T) frame features; see the module text.

    body: one of BODIES; cond: class channels (0: none); width: hidden channels; bound: the largest
    change in standard deviations; f0_bound: the same for log-F0 (default `bound`; its standard
    deviation is the voiced frames' log-F0's, `set_scaling`). `forward(x, cond=None, noise=None, strength=1.0)`: x (B, FEATURES, T)
    in feature units, cond (B, cond) one-hot, noise (B, 1, T) (gengan only; zeros when None), strength
    the share of the residual applied (0: the input back) -> (B, FEATURES, T).
    Any T >= 1 (the U-Net pads to a multiple of 4 and crops back). ValueError for an unknown body or
    a bound that is not positive.
    """

    stride = 1

    def __init__(
        self, body: str = "gengan", cond: int = 2, width: int = 64, bound: float = 1.0, f0_bound: float | None = None
    ):
        super().__init__()
        if body not in BODIES:
            raise ValueError(f"generator body {body!r}: choose one of {', '.join(BODIES)}")
        if not bound > 0:
            raise ValueError(f"bound {bound}: expected a positive number of standard deviations")
        self.body, self.cond, self.width, self.bound = body, int(cond), int(width), float(bound)
        self.f0_bound = self.bound if f0_bound is None else float(f0_bound)
        if not self.f0_bound >= 0:
            raise ValueError(f"f0_bound {f0_bound}: expected a number of standard deviations, at least 0")
        limits = torch.full((len(CHANGED_INDEX),), self.bound)
        limits[CHANGED_INDEX.index(LOG_F0)] = self.f0_bound
        self.register_buffer("limits", limits, persistent=False)
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))
        cin = FEATURES + self.cond + (1 if body == "gengan" else 0)
        w = self.width
        if body == "gengan":
            self.inp = _Block(cin, w)
            self.down1 = _Block(w, w * 3 // 2, stride=2)
            self.down2 = _Block(w * 3 // 2, w * 2, stride=2)
            self.mid = _Block(w * 2, w * 2)
            self.up2 = _Block(w * 2 + w * 3 // 2, w * 3 // 2)
            self.up1 = _Block(w * 3 // 2 + w, w)
        elif body == "pcmelgan":
            self.inp = _Block(cin, w)
            self.stack = nn.ModuleList([_Block(w, w) for _ in range(4)])
        else:
            self.inp = nn.Conv1d(cin, w, 1)
            self.stack = nn.ModuleList([_GatedBlock(w, d) for d in (1, 2, 4, 8, 1, 2, 4, 8)])
        self.head = nn.Conv1d(w, len(CHANGED_INDEX), 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        """The constructor's arguments (what a model's config stores to rebuild the network)."""
        return {
            "body": self.body,
            "cond": self.cond,
            "width": self.width,
            "bound": self.bound,
            "f0_bound": self.f0_bound,
        }

    def set_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-channel standardisation (FEATURES,) of the training features (std floored at 1e-3)."""
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std).clamp_min(1e-3))

    def _hidden(self, h: torch.Tensor) -> torch.Tensor:
        if self.body == "gengan":
            frames = h.shape[-1]
            h = nn.functional.pad(h, (0, (-frames) % 4), mode="replicate")
            e1 = self.inp(h)
            e2 = self.down1(e1)
            m = self.mid(self.down2(e2))
            u2 = self.up2(torch.cat([nn.functional.interpolate(m, size=e2.shape[-1]), e2], dim=1))
            u1 = self.up1(torch.cat([nn.functional.interpolate(u2, size=e1.shape[-1]), e1], dim=1))
            return u1[..., :frames]
        h = self.inp(h)
        for block in self.stack:
            h = block(h) + h if self.body == "pcmelgan" else block(h)
        return h

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        strength: float = 1.0,
    ) -> torch.Tensor:
        batch, _, frames = x.shape
        z = (x - self.mean[:, None]) / self.std[:, None]
        parts = [z]
        if self.cond:
            if cond is None:
                raise ValueError("this generator is conditioned on a class: cond (B, classes) is needed")
            parts.append(cond.to(z)[:, :, None].expand(batch, self.cond, frames))
        if self.body == "gengan":
            parts.append(torch.zeros(batch, 1, frames, device=z.device) if noise is None else noise.to(z))
        delta = strength * self.limits[:, None] * torch.tanh(self.head(self._hidden(torch.cat(parts, dim=1))))
        index = torch.as_tensor(CHANGED_INDEX, device=x.device)
        change = torch.zeros_like(x).index_copy(1, index, delta * self.std[index][:, None])
        out = x + change
        # log-F0 only where voiced: unvoiced frames keep 0
        voiced = x[:, VOICED : VOICED + 1]
        return torch.cat([out[:, :LOG_F0], out[:, LOG_F0 : LOG_F0 + 1] * voiced, out[:, VOICED:]], dim=1)


def build_generator(config: dict) -> WorldResidualGenerator:
    """A generator from a model's `generator` config (`WorldResidualGenerator.config()`); KeyError/ValueError when bad."""
    f0_bound = config.get("f0_bound")
    return WorldResidualGenerator(
        str(config["body"]),
        int(config["cond"]),
        int(config["width"]),
        float(config["bound"]),
        None if f0_bound is None else float(f0_bound),
    )


def frame_features(mcep, log_f0, voiced, bap, level_db) -> torch.Tensor:
    """(FEATURES, T) float32 frame features from one utterance's arrays: mcep (T, 40), log_f0 (T,) (0 where
    unvoiced), voiced (T,) bool, bap (T, >= 1; the first band is used), level_db (T,) dB. The level channel
    is the level relative to the loudest frame, in dB / 10."""
    import numpy as np

    level = np.asarray(level_db, dtype=np.float64)
    rows = [
        np.asarray(mcep, dtype=np.float64).T,
        np.where(voiced, log_f0, 0.0)[None],
        np.asarray(voiced, dtype=np.float64)[None],
        np.asarray(bap, dtype=np.float64)[:, :1].T,
        ((level - level.max()) / 10.0)[None],
    ]
    return torch.from_numpy(np.concatenate(rows, axis=0).astype(np.float32))


def split_features(frames: torch.Tensor) -> dict:
    """The inverse of `frame_features` for what a generator changes: {"mcep": (T, 40), "log_f0": (T,),
    "bap": (T, 1)} float64 numpy arrays from (FEATURES, T)."""
    x = frames.detach().cpu().double().numpy()
    return {"mcep": x[:N_MCEP].T.copy(), "log_f0": x[LOG_F0].copy(), "bap": x[BAP : BAP + 1].T.copy()}
