"""Running a U-Net generator on utterances of any length with bounded memory.

Frames are padded (edge replication) to a multiple of the U-Net stride and
cropped back. An utterance longer than `chunk_frames` is cut into overlapping
chunks whose starts are multiples of the stride; the overlaps are
cross-faded linearly. Time-varying conditioning (a noise map at bottleneck
resolution under cond["noise"]) is sliced with the same chunk grid, so
chunked and whole-utterance outputs agree away from chunk edges.
"""

from __future__ import annotations

import torch

TIME_KEYS = ("noise",)


def pad_frames(mel: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int]:
    """Pad the last (frame) axis to a multiple of the U-Net stride by edge replication; return it and the original length."""
    frames = mel.shape[-1]
    target = -(-frames // multiple) * multiple
    if target == frames:
        return mel, frames
    pad = target - frames
    # replicate padding needs a 3-D view at least
    shape = mel.shape
    flat = mel.reshape(-1, shape[-2], shape[-1]) if mel.dim() != 3 else mel
    padded = torch.nn.functional.pad(flat, (0, pad), mode="replicate")
    return padded.reshape(*shape[:-1], target), frames


def _slice_cond(cond: dict, start: int, stop: int, stride: int) -> dict:
    out = {}
    for key, value in cond.items():
        if key in TIME_KEYS and value is not None:
            out[key] = value[..., start // stride : stop // stride]
        else:
            out[key] = value
    return out


def _fit_noise(cond: dict, width: int) -> dict:
    """Make time-varying conditioning exactly `width` bottleneck steps long (crop or replicate)."""
    out = dict(cond)
    for key in TIME_KEYS:
        value = out.get(key)
        if value is None:
            continue
        if value.shape[-1] > width:
            out[key] = value[..., :width]
        elif value.shape[-1] < width:
            flat = value.reshape(-1, value.shape[-2], value.shape[-1])
            padded = torch.nn.functional.pad(flat, (0, width - value.shape[-1]), mode="replicate")
            out[key] = padded.reshape(*value.shape[:-1], width)
    return out


def crossfade_starts(total: int, chunk: int, overlap: int, stride: int) -> list[int]:
    """Start frames of `chunk`-frame windows over `total` frames, overlapping by at least `overlap`, on multiples of `stride`; the last ends at `total`.

    Called only when total > chunk (`generate` runs shorter inputs in one piece).
    """
    step = max(stride, ((chunk - overlap) // stride) * stride)
    starts = list(range(0, max(1, total - chunk + 1), step))
    last = total - chunk
    if starts[-1] != last:
        starts.append(last)
    return starts


@torch.no_grad()
def generate(
    generator, mel: torch.Tensor, cond: dict | None = None, chunk_frames: int = 1024, overlap: int = 128
) -> torch.Tensor:
    """(B, n_mels, F) normalised mel -> generator output of the same shape, for any F.

    The mel is padded to a multiple of the generator's stride; mels longer than
    `chunk_frames` run in overlapping chunks cross-faded over `overlap` frames,
    so memory stays bounded for any utterance length.

    Example:
        >>> import torch
        >>> from anoncli.models.unet import UNet
        >>> net = UNet((8, 16), residual=True).eval()
        >>> generate(net, torch.rand(1, 80, 301) * 2 - 1, chunk_frames=64, overlap=16).shape
        torch.Size([1, 80, 301])
    """
    stride = generator.stride
    cond = cond or {}
    padded, frames = pad_frames(mel, stride)
    total = padded.shape[-1]
    cond = _fit_noise(cond, total // stride)
    x = padded.unsqueeze(1)
    chunk = max(stride, (chunk_frames // stride) * stride)
    if total <= chunk:
        return generator(x, cond).squeeze(1)[..., :frames]
    overlap = min(max(0, (overlap // stride) * stride), chunk - stride)
    out = torch.zeros_like(x)
    weight = torch.zeros(total, device=mel.device, dtype=x.dtype)
    ramp = torch.ones(chunk, device=mel.device, dtype=x.dtype)
    if overlap:
        edge = torch.linspace(0.0, 1.0, overlap + 2, device=mel.device, dtype=x.dtype)[1:-1]
        ramp[:overlap] = edge
        ramp[-overlap:] = edge.flip(0)
    starts = crossfade_starts(total, chunk, overlap, stride)
    for index, start in enumerate(starts):
        stop = start + chunk
        piece = generator(x[..., start:stop], _slice_cond(cond, start, stop, stride))
        w = ramp.clone()
        if index == 0:
            w[:overlap] = 1.0
        if index == len(starts) - 1:
            w[chunk - overlap :] = 1.0
        out[..., start:stop] += piece * w
        weight[start:stop] += w
    return (out / weight.clamp(min=1e-6)).squeeze(1)[..., :frames]
