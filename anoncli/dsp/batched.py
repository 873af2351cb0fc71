"""McAdams transformation batched in torch over all frames of all utterances (GPU path).

Each stage works on every frame of the batch at once: autocorrelation and
Levinson-Durbin, polynomial roots by simultaneous Aberth-Ehrlich iterations
(elementwise work that suits a GPU; eigenvalue solvers do not batch there),
pole rotation, polynomial expansion, per-frame filtering with
`torchaudio.functional.lfilter`, and overlap-add. Everything is float64: the
roots of an order-20 polynomial and the all-pole filter near the unit circle
need it.

On a CPU the compiled kernel in `anoncli.dsp.mcadams_kernel` is several times
faster (see its docstring); both follow the conventions in
`anoncli.dsp.constants` and agree to rounding.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as audio_functional

from anoncli.dsp.constants import (
    LEVEL_REACH_FRAMES,
    LPC_NOISE_FLOOR,
    MAX_ABERTH_ITERATIONS,
    MIN_START_RADIUS,
    REAL_ROOT_TOL,
    ROOT_STEP_TOL,
    START_ANGLE_OFFSET,
)
from anoncli.dsp.framing import FrameLayout, overlap_add, pad_for_frames

# Measured on the CPU (7 704 frames, one thread): companion-matrix eigenvalues
# 37 us per frame, the batched Aberth-Ehrlich iterations below 180 us. (The
# compiled kernel, 13 us per frame for the whole transform, is the CPU default.)
CPU_ROOT_SOLVER = "eigvals"


def autocorrelation(frames: torch.Tensor, order: int) -> torch.Tensor:
    """Lags 0..order of each frame (rows).

    One product-sum per lag: on the CPU half the time of a zero-padded FFT
    (0.11 s vs 0.20 s for 7 704 frames) and no (F, W, lags) temporary.
    """
    win_len = frames.shape[-1]
    return torch.stack([(frames[:, k:] * frames[:, : win_len - k]).sum(-1) for k in range(order + 1)], dim=-1)


def levinson(r: torch.Tensor) -> torch.Tensor:
    """Autocorrelations (F, p+1) -> monic LPC polynomials (F, p+1)."""
    n, p1 = r.shape
    p = p1 - 1
    a = torch.zeros_like(r)
    a[:, 0] = 1.0
    err = r[:, 0] * (1.0 + LPC_NOISE_FLOOR)
    for i in range(1, p + 1):
        acc = r[:, i] + (a[:, 1:i] * r[:, 1:i].flip(-1)).sum(-1)
        # A degenerate frame (prediction error exhausted) keeps the order reached so far.
        positive = err > 0
        reflection = torch.where(positive, -acc / torch.where(positive, err, torch.ones_like(err)), 0.0)
        previous = a[:, :i].clone()
        a[:, 1:i] = previous[:, 1:i] + reflection[:, None] * previous[:, 1:i].flip(-1)
        a[:, i] = reflection
        err = err * (1.0 - reflection * reflection)
    return a


def _horner(coef: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P(z) and P'(z) for monic P with coefficients coef (F, p+1), at points z (F, p)."""
    value = torch.ones_like(z)
    slope = torch.zeros_like(z)
    for k in range(1, coef.shape[1]):
        slope = slope * z + value
        value = value * z + coef[:, k : k + 1]
    return value, slope


def polynomial_roots(a: torch.Tensor) -> torch.Tensor:
    """Complex roots (F, p) of z^p + a1 z^(p-1) + ... + ap, rows of a (F, p+1), float64.

    On a GPU: simultaneous Aberth-Ehrlich iterations from the same starting
    circle as the compiled kernel; rows still unsettled after
    MAX_ABERTH_ITERATIONS use eigenvalues of the companion matrix (on the CPU).
    On the CPU: those eigenvalues for every row, which is faster there.
    """
    n, p1 = a.shape
    p = p1 - 1
    if a.device.type == "cpu" and CPU_ROOT_SOLVER == "eigvals":
        return _companion_eigenvalues(a)
    coef = a.to(torch.complex128)
    radius = a[:, p].abs().pow(1.0 / p).clamp_min(MIN_START_RADIUS)
    angles = (2.0 * math.pi * torch.arange(p, dtype=torch.float64, device=a.device) + START_ANGLE_OFFSET) / p
    z = torch.polar(radius[:, None].expand(n, p), angles[None, :].expand(n, p).contiguous())
    off_diagonal = ~torch.eye(p, dtype=torch.bool, device=a.device)
    active = torch.arange(n, device=a.device)
    roots = torch.empty_like(z)
    for _ in range(MAX_ABERTH_ITERATIONS):
        if active.numel() == 0:
            break
        value, slope = _horner(coef[active], z)
        diff = z[:, :, None] - z[:, None, :]
        pull = torch.where(off_diagonal, 1.0 / torch.where(off_diagonal, diff, 1.0), 0.0).sum(-1)
        ratio = value / slope
        step = ratio / (1.0 - ratio * pull)
        z = z - step
        largest = step.real.abs().add(step.imag.abs()).amax(-1)
        done = largest <= ROOT_STEP_TOL
        if bool(done.any()):
            roots[active[done]] = z[done]
            z = z[~done]
            active = active[~done]
    if active.numel():
        roots[active] = _companion_eigenvalues(a[active].cpu()).to(a.device)
    return roots


def _companion_eigenvalues(a: torch.Tensor) -> torch.Tensor:
    n, p1 = a.shape
    p = p1 - 1
    companion = torch.zeros(n, p, p, dtype=torch.float64, device=a.device)
    companion[:, 0, :] = -a[:, 1:]
    companion[:, 1:, :-1] = torch.eye(p - 1, dtype=torch.float64, device=a.device)
    return torch.linalg.eigvals(companion)


def rotate_poles(roots: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Complex poles: angle phi -> sign(phi) min(|phi|^alpha, pi); real poles unchanged. alpha: (F,)."""
    angle = roots.angle()
    new_angle = torch.sign(angle) * angle.abs().pow(alpha[:, None]).clamp_max(math.pi)
    rotated = torch.polar(roots.abs(), new_angle)
    return torch.where(roots.imag.abs() > REAL_ROOT_TOL, rotated, roots)


def expand_polynomial(roots: torch.Tensor) -> torch.Tensor:
    """Real coefficients (F, p+1) of prod_i (z - root_i), highest power first."""
    n, p = roots.shape
    coef = torch.zeros(n, p + 1, dtype=roots.dtype, device=roots.device)
    coef[:, 0] = 1.0
    for i in range(p):
        coef[:, 1 : i + 2] = coef[:, 1 : i + 2] - roots[:, i : i + 1] * coef[:, : i + 1]
    return coef.real.contiguous()


# Frames transformed together: bounds the root finder's (F, p, p) complex
# temporaries (~50 MB each at 8192 frames) whatever the batch's total length.
CHUNK_FRAMES = 8192


def transform_frames(frames: torch.Tensor, alpha: torch.Tensor, order: int) -> torch.Tensor:
    """Windowed frames (F, W) -> McAdams-transformed frames (F, W), before the synthesis window."""
    if frames.shape[0] > CHUNK_FRAMES:
        return torch.cat(
            [
                _transform_chunk(part, part_alpha, order)
                for part, part_alpha in zip(frames.split(CHUNK_FRAMES), alpha.split(CHUNK_FRAMES))
            ]
        )
    return _transform_chunk(frames, alpha, order)


def _transform_chunk(frames: torch.Tensor, alpha: torch.Tensor, order: int) -> torch.Tensor:
    a = levinson(autocorrelation(frames, order))
    b = expand_polynomial(rotate_poles(polynomial_roots(a), alpha))
    # y = frame * A(z) / B(z), zero initial state, truncated to the frame.
    return audio_functional.lfilter(frames, b, a, clamp=False, batching=True)


def local_level_gains(source: torch.Tensor, produced: torch.Tensor, reach: int = LEVEL_REACH_FRAMES) -> torch.Tensor:
    """Per-frame output gains (F,) from the frame energies (F,) of one utterance's input and output.

    gain = sqrt(sum of input energies / sum of output energies) over the
    frames within `reach` of each frame (zeros beyond the ends); 1 where
    either sum is zero. The compiled kernel's `_overlap_add_leveled`.
    """
    # Sums over unfolded windows, not a convolution: the same bits on every run on a GPU too.
    padded = torch.nn.functional.pad(torch.stack([source, produced]), (reach, reach))
    s, q = padded.unfold(1, 2 * reach + 1, 1).sum(-1)
    ok = (s > 0) & (q > 0)
    return torch.where(ok, torch.sqrt(torch.where(ok, s, 1.0) / torch.where(ok, q, 1.0)), 1.0)


def mcadams_batch(
    waves: list[torch.Tensor],
    alphas: list[float],
    window: torch.Tensor,
    shift: int,
    order: int,
) -> list[torch.Tensor]:
    """McAdams-transform a batch of 1-D signals; one result per signal, same lengths, float64.

    Each frame's output is scaled so that its utterance's output and input
    energies (after the synthesis window) match over the frames within
    `LEVEL_REACH_FRAMES` of it (`local_level_gains`): the output level follows
    the input's along each file.
    """
    win_len = window.shape[0]
    device = window.device
    layouts = [FrameLayout(int(w.shape[0]), win_len, shift) for w in waves]
    frames = torch.cat(
        [pad_for_frames(w.to(device, torch.float64), lay).unfold(0, win_len, shift) for w, lay in zip(waves, layouts)]
    )
    frame_alpha = torch.cat(
        [torch.full((lay.n_frames,), float(al), dtype=torch.float64, device=device) for al, lay in zip(alphas, layouts)]
    )
    frames = frames * window
    # An all-zero frame contributes nothing: leave it out of the expensive work.
    live = frames.ne(0).any(-1)
    shaped = torch.zeros_like(frames)
    if bool(live.any()):
        shaped[live] = transform_frames(frames[live], frame_alpha[live], order)
    source = (frames * window).square().sum(-1)
    produced = (shaped * window).square().sum(-1)
    counts = [lay.n_frames for lay in layouts]
    gains = torch.cat([local_level_gains(s, q) for s, q in zip(source.split(counts), produced.split(counts))])
    shaped = shaped * gains[:, None] * window
    outputs = []
    for part, lay in zip(shaped.split(counts), layouts):
        outputs.append(overlap_add(part, lay))
    return outputs
