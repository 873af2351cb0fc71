"""Frame layout and the perfect-reconstruction analysis/synthesis window.

Both McAdams paths (compiled CPU kernel and batched torch) use these, so
they cut and re-assemble frames identically. torch is imported by the
functions that build tensors, not by this module: the compiled CPU path uses
the numpy window and never imports torch.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
        """Zeros before the signal, in samples: `win_len - shift`."""
        return self.win_len - self.shift

    @property
    def n_frames(self) -> int:
        """Number of frames that touch the signal."""
        return (self.lead + self.length - 1) // self.shift + 1

    @property
    def padded_length(self) -> int:
        """Samples in the padded signal: lead, signal and trailing zeros up to the end of the last frame."""
        return (self.n_frames - 1) * self.shift + self.win_len


def frame_sizes(sample_rate: int, window_ms: float, shift_ms: float) -> tuple[int, int]:
    """Window and shift in samples (20 ms / 10 ms -> 320 / 160 at 16 kHz)."""
    win_len = int(round(window_ms * 1e-3 * sample_rate))
    shift = int(round(shift_ms * 1e-3 * sample_rate))
    if shift < 1 or win_len < shift:
        raise ValueError(f"bad frame sizes: window {win_len}, shift {shift} samples")
    return win_len, shift


def sqrt_hann_window(win_len: int, shift: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`sqrt_hann_window_array` as a torch tensor (float64 unless `dtype`): the batched torch path's window."""
    import torch

    return torch.from_numpy(sqrt_hann_window_array(win_len, shift)).to(dtype or torch.float64)


# The McAdams window (20 ms / 10 ms at 16 kHz: 320 / 160 samples) as float64 little-endian bytes, base64:
# the bits earlier versions computed with torch, whose vectorised square root is not always correctly
# rounded (sample 92 is one unit in the last place below numpy's). Kept so that outputs stay bit for bit
# the same across versions and machines, on both McAdams paths, with or without torch.
_SQRT_HANN_320_160 = (
    "AAAAAAAAAABETOZLGhuEP56OEszaGpQ/yJYbdKknnj8C4XbR3BmkP/XXDfFlH6k/FAC+YFAkrj9mgC42PpSxPz+OOTLlFbQ/IKqB"
    "Tw2Xtj8vtCm8phe5P9vZ2amhl7s//2sjTu4Wvj+VTnJxvkrAPzMSVtOeicE/PWGObhDIwj93U6hnCwbEP2pZHuaHQ8U/MsuJFH6A"
    "xj+LY9Qg5rzHPwymaTy4+Mg/IC9onOwzyj/L7NJ5e27LP4c+whFdqMw/yvuUpYnhzT8aXyF7+RnPP5jqcm7SKNA/UtccDULE0D9y"
    "2b7DR1/RP7ZJJr/f+dE/Bp/VLgaU0j9nhhxFty3TP0/pLzfvxtM/qeFBPapf1D/umpmS5PfUP90fq3Waj9U/CBQvKMgm1j/UWDrv"
    "ab3WPzOdVRN8U9c/kdeU4Pro1z9iqa6m4n3YP7mrE7kvEtk/SqQFb96l2T9poq4j6zjaPzsDODZSy9o/wFzhCRBd2z8CTxcGIe7b"
    "P+M6ipaBftw/Ad5EKy4O3T8S08I4I53dPzv2BjhdK94/y6yxpti43j/NDxcHkkXfP+T4VOCF0d8/dng0X1gu4D/t/yKZh3PgP50u"
    "9ehOuOA/aoA6nKz84D99iR0Dn0DhP/OdbnAkhOE/yGiuOTvH4T/ZcRi34QniP5WSrUMWTOI/P1k+PdeN4j9eWnUEI8/iPzVw4fz3"
    "D+M/8uf/jFRQ4z9anEYeN5DjP7L9LR2ez+M/ogY7+YcO5D/WHQkl80zkPyXkUxbeiuQ/7u4ARkfI5D+CbikwLQXlP0/AI1SOQeU/"
    "n+yMNGl95T+WD1JXvLjlP1KtuUWG8+U/2/BsjMUt5j+z1YC7eGfmP8w7f2aeoOY/peVvJDXZ5j9VYOGPOxHnP2PV8UawSOc/AcZX"
    "65F/5z+vr2oi37XnP9uZK5WW6+c/dIxN8LYg6D8T7z3kPlXoP6LQLCUtieg/QBcVa4C86D80mMRxN+/oP7AX5PhQIek/QzD/w8tS"
    "6T+4IYyapoPpP0CH80fgs+k/qPSXm3fj6T9tet1oaxLqP5AQMYe6QOo/4OcP0mNu6j+joQ4pZpvqP11t4G/Ax+o/nAxejnHz6j+Q"
    "vIxweB7rP0AFpQbUSOs/Pm4ZRYNy6z+iGJ0khZvrPzI+KqLYw+s/fZUIv3zr6z/KmtOAcBLsP7C9gPGyOOw/PnNlH0Ne7D9sLD0d"
    "IIPsP9UwLwJJp+w/eF3U6bzK7D9yxzz0eu3sP39C9UWCD+0/GcsMCNIw7T8q1BloaVHtPyN4P5hHce0/Ro0yz2uQ7T8onT5I1a7t"
    "Pym/SkODzO0/1FXeBHXp7T8PryXWqQXuP+WG9gQhIe4/72zU49k77j8jDPXJ01XuP/9URBMOb+4/8IloIIiH7j/bLcZWQZ/uP63U"
    "gyA5tu4/6dWN7G7M7j8C4Zku4uHuP4BzKl+S9u4/1zCS+34K7z/OG/eFpx3vP3SxVYULMO8/f+WDhapB7z8MADQXhFLvP7Bc98+X"
    "Yu8/ugpBSuVx7z+oTmglbIDvP7EEqwUsju8/XOQvlCSb7z8XpQh/VafvP7kDNHm+su8/6qifOl+97z9f8CmAN8fvP+SQowtH0O8/"
    "JiXRo43Y7z8zlWwUC+DvP69gJi6/5u8/o8mmxqns7z/33464yvHvP31teeMh9u8/mML7K6/57z9bY6Z7cvzvP0+VBcFr/u8/ps2h"
    "75r/7z8AAAAAAADwP6bNoe+a/+8/T5UFwWv+7z9bY6Z7cvzvP5jC+yuv+e8/fm154yH27z/33464yvHvP6PJpsap7O8/r2AmLr/m"
    "7z8zlWwUC+DvPyYl0aON2O8/5JCjC0fQ7z9f8CmAN8fvP+qonzpfve8/uQM0eb6y7z8XpQh/VafvP1zkL5Qkm+8/sQSrBSyO7z+p"
    "TmglbIDvP7sKQUrlce8/sVz3z5di7z8MADQXhFLvP3/lg4WqQe8/dLFVhQsw7z/OG/eFpx3vP9cwkvt+Cu8/gHMqX5L27j8C4Zku"
    "4uHuP+nVjexuzO4/rdSDIDm27j/bLcZWQZ/uP/GJaCCIh+4//1REEw5v7j8jDPXJ01XuP+9s1OPZO+4/5Yb2BCEh7j8PryXWqQXu"
    "P9VV3gR16e0/Kb9KQ4PM7T8pnT5I1a7tP0eNMs9rkO0/I3g/mEdx7T8q1BloaVHtPxnLDAjSMO0/gUL1RYIP7T90xzz0eu3sP3hd"
    "1Om8yuw/1TAvAkmn7D9tLD0dIIPsPz9zZR9DXuw/sb2A8bI47D/JmtOAcBLsP32VCL986+s/Mz4qotjD6z+jGJ0khZvrPz5uGUWD"
    "cus/QQWlBtRI6z+RvIxweB7rP5wMXo5x8+o/XG3gb8DH6j+koQ4pZpvqP+LnD9Jjbuo/kRAxh7pA6j9uet1oaxLqP6j0l5t34+k/"
    "QYfzR+Cz6T+4IYyapoPpP0Mw/8PLUuk/sBfk+FAh6T82mMRxN+/oP0IXFWuAvOg/o9AsJS2J6D8T7z3kPlXoP3WMTfC2IOg/25kr"
    "lZbr5z+ur2oi37XnPwPGV+uRf+c/ZdXxRrBI5z9XYOGPOxHnP6XlbyQ12eY/zTt/Zp6g5j+01YC7eGfmP9vwbIzFLeY/Uq25RYbz"
    "5T+WD1JXvLjlP6HsjDRpfeU/UcAjVI5B5T+DbikwLQXlP+7uAEZHyOQ/JeRTFt6K5D/WHQkl80zkP6EGO/mHDuQ/tf0tHZ7P4z9c"
    "nEYeN5DjP/Pn/4xUUOM/NnDh/PcP4z9fWnUEI8/iP0BZPj3XjeI/lZKtQxZM4j/YcRi34QniP8dorjk7x+E/9Z1ucCSE4T9/iR0D"
    "n0DhP2uAOpys/OA/nS716E644D/u/yKZh3PgP3Z4NF9YLuA/4/hU4IXR3z/SDxcHkkXfP9GssabYuN4/P/YGOF0r3j8U08I4I53d"
    "PwPeRCsuDt0/5DqKloF+3D8CTxcGIe7bP79c4QkQXds/OQM4NlLL2j9uoq4j6zjaP06kBW/epdk/u6sTuS8S2T9lqa6m4n3YP5LX"
    "lOD66Nc/M51VE3xT1z/UWDrvab3WPw4ULyjIJtY/4R+rdZqP1T/zmpmS5PfUP6zhQT2qX9Q/UekvN+/G0z9nhhxFty3TPwaf1S4G"
    "lNI/tEkmv9/50T9w2b7DR1/RP1jXHA1CxNA/nupybtIo0D8iXyF7+RnPP8/7lKWJ4c0/jD7CEV2ozD/L7NJ5e27LPyAvaJzsM8o/"
    "FqZpPLj4yD+WY9Qg5rzHPz3LiRR+gMY/cFke5odDxT93U6hnCwbEPz1hjm4QyMI/MxJW056JwT+VTnJxvkrAP+5rI07uFr4/7tnZ"
    "qaGXuz9EtCm8phe5PyCqgU8Nl7Y/WI45MuUVtD9mgC42PpSxPxQAvmBQJK4/9dcN8WUfqT8C4XbR3BmkP9iXG3SpJ54/no4SzNoa"
    "lD9ETOZLGhuEPw=="
)


def sqrt_hann_window_array(win_len: int, shift: int) -> np.ndarray:
    """sqrt(periodic Hann / K) with K = sum(Hann) / shift, float64 (win_len,), without torch.

    Used for both analysis and synthesis: the product of the two is a Hann
    window scaled so that its shifted copies sum to exactly one (the periodic
    Hann is constant-overlap-add at any hop that divides its length evenly),
    which is what makes alpha = 1 give the input back. The Hann samples are
    cos(n 2pi/N) * -0.5 + 0.5, torch's formula; the 320/160 window is the
    stored `_SQRT_HANN_320_160`.
    """
    if (win_len, shift) == (320, 160):
        return np.frombuffer(base64.b64decode("".join(_SQRT_HANN_320_160)), dtype="<f8").astype(np.float64)
    hann = np.cos(np.arange(win_len, dtype=np.float64) * (math.pi * 2.0 / win_len)) * -0.5 + 0.5
    return np.sqrt(hann / (hann.sum() / shift))


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
    import torch

    n_frames, win_len = frames.shape
    folded = torch.nn.functional.fold(
        frames.t().unsqueeze(0),
        output_size=(1, layout.padded_length),
        kernel_size=(1, win_len),
        stride=(1, layout.shift),
    ).reshape(-1)
    return folded[layout.lead : layout.lead + layout.length]
