"""Frame layout and the perfect-reconstruction analysis/synthesis window.

Both McAdams paths (compiled CPU kernel and batched torch) use these, so
they cut and re-assemble frames identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FrameLayout:
    """How one signal of `length` samples is padded and cut into frames.

    The signal is preceded by `win_len - shift` zeros, so that its first sample
    is covered by as many frames as every other sample (the overlap-added
    windows then sum to one everywhere, edges included), and followed by zeros
    up to the end of the last frame that still touches it.
    """

    length: int
    win_len: int
    shift: int

    @property
    def lead(self) -> int:
        return self.win_len - self.shift

    @property
    def n_frames(self) -> int:
        return (self.lead + self.length - 1) // self.shift + 1

    @property
    def padded_length(self) -> int:
        return (self.n_frames - 1) * self.shift + self.win_len


def frame_sizes(sample_rate: int, window_ms: float, shift_ms: float) -> tuple[int, int]:
    """Window and shift in samples (20 ms / 10 ms -> 320 / 160 at 16 kHz)."""
    win_len = int(round(window_ms * 1e-3 * sample_rate))
    shift = int(round(shift_ms * 1e-3 * sample_rate))
    if shift < 1 or win_len < shift:
        raise ValueError(f"bad frame sizes: window {win_len}, shift {shift} samples")
    return win_len, shift


def sqrt_hann_window(win_len: int, shift: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """sqrt(periodic Hann / K) with K = sum(Hann) / shift.

    Used for both analysis and synthesis: the product of the two is a Hann
    window scaled so that its shifted copies sum to exactly one (the periodic
    Hann is constant-overlap-add at any hop that divides its length evenly),
    which is what makes alpha = 1 give the input back.
    """
    hann = torch.hann_window(win_len, periodic=True, dtype=torch.float64)
    gain = hann.sum() / shift
    return torch.sqrt(hann / gain).to(dtype)


def pad_for_frames(wave: torch.Tensor, layout: FrameLayout) -> torch.Tensor:
    """The signal placed at `layout.lead` in a zero buffer of `layout.padded_length`."""
    padded = wave.new_zeros(layout.padded_length)
    padded[layout.lead : layout.lead + layout.length] = wave
    return padded


def overlap_add(frames: torch.Tensor, layout: FrameLayout) -> torch.Tensor:
    """Sum frames (n_frames, win_len) at their hop positions; returns the cropped signal.

    `fold` sums the contributions of each output sample in a fixed order, so
    the result is deterministic on GPUs too (no atomics).
    """
    n_frames, win_len = frames.shape
    folded = torch.nn.functional.fold(
        frames.t().unsqueeze(0),
        output_size=(1, layout.padded_length),
        kernel_size=(1, win_len),
        stride=(1, layout.shift),
    ).reshape(-1)
    return folded[layout.lead : layout.lead + layout.length]
