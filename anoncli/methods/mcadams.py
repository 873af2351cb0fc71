"""McAdams-coefficient anonymization (VoicePrivacy baseline B2), training-free.

Per frame (20 ms window, 10 ms shift, sqrt-Hann analysis and synthesis windows
that overlap-add to one): LPC of order 20 (autocorrelation, Levinson-Durbin);
the poles with non-zero imaginary part keep their magnitude and have their
angle phi moved to sign(phi)|phi|^alpha, which shifts the formants; the LPC
residual of the frame is filtered through the all-pole filter of the new
poles; each frame's output is scaled so that the output's energy over the
frames within 0.5 s of it (`LEVEL_REACH_FRAMES`) equals the input's there;
the frames are overlap-added. alpha is drawn from U(0.5, 0.9) per utterance
(or per speaker), or fixed with --alpha.

Differences from the VoicePrivacy reference script, on purpose: every frame
is processed (the reference skips the first one and the tail after the last
full frame), the window overlap-adds to exactly one so that alpha = 1 returns
the input, LPC is autocorrelation/Levinson-Durbin as the spec says (the
reference's `librosa.lpc` is Burg's method), and the output keeps the input's
level along the file instead of being normalised to full scale (the writer
still scales down anything that would clip). The level is matched locally,
not on the whole file: the new filters amplify noise-like frames far more
than voiced ones (white noise against a synthetic vowel: about 10 dB more at
alpha 0.8, 30 dB at 0.5), so one gain for the whole file raised a long
stretch of low-level noise by that much and, where that noise held much of
the file's energy, lowered the speech.

Before analysis, the engine's runs remove DC and sub-audible rumble
(`remove_rumble`, asked for by the `highpass` entry of each utterance's
parameters): the frame-by-frame filters would otherwise turn an offset into
a buzz at the 100 Hz frame rate and its harmonics, and an offset would
inflate the energies the output level is matched to. Called without that entry,
`process` is the plain algorithm above.

Two implementations of the same arithmetic: a compiled CPU kernel (numba,
`anoncli.dsp.mcadams_kernel`) and a batched torch path for GPUs
(`anoncli.dsp.batched`); `--param backend=torch|compiled` overrides the choice.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from anoncli.dsp.constants import LEVEL_REACH_FRAMES
from anoncli.dsp.framing import FrameLayout, frame_sizes, sqrt_hann_window, sqrt_hann_window_array
from anoncli.errors import AnoncliError
from anoncli.methods.base import Method, MethodOptions, MethodOutput

if TYPE_CHECKING:  # the compiled CPU path runs on numpy arrays and never imports torch
    import torch

    from anoncli.corpus.utterance import Utterance

ALPHA_RANGE = (0.5, 0.9)
# alpha < 1 lowers formants above ~2.5 kHz (1 rad) and raises those below;
# alpha > 1 does the opposite. Outside these bounds the spectrum collapses
# towards 1 rad or folds at Nyquist, which is no longer speech.
ALPHA_MIN, ALPHA_MAX = 0.1, 1.5
BACKENDS = ("auto", "compiled", "torch")
# DC and rumble removal: the signal minus its local mean over three passes of a centred
# boxcar this long (about one analysis window). Response 1 - sinc(f*T)^3: DC removed, about
# -15 dB at 10 Hz, -3 dB near 23 Hz, within 0.1 dB from 40 Hz up (speech has no energy lower).
RUMBLE_WINDOW_MS = 20.0


@dataclass(frozen=True)
class McAdamsOptions:
    """McAdams' own settings: `--alpha X` (stored as the `alpha` param) and `--param KEY=VALUE`.

    alpha: one McAdams coefficient for every utterance, in [ALPHA_MIN,
    ALPHA_MAX] other than 1 (which leaves the voice unchanged); None draws one per utterance
    (or per speaker) from U(0.5, 0.9). backend: auto (compiled kernel on the
    CPU when numba is installed, else torch), compiled, or torch. highpass:
    remove DC and rumble before analysis; 0/false/no/off keeps them (the
    bare algorithm, e.g. to compare with the reference).
    """

    alpha: float | None = None
    backend: str = "auto"
    highpass: bool = True


def compiled_kernel_available() -> bool:
    """Whether numba is installed (checked without importing it), i.e. whether the compiled CPU kernel can run."""
    # find_spec, not import: importing numba costs ~0.4 s of CPU, wasted on the torch path.
    return importlib.util.find_spec("numba") is not None


class McAdams(Method):
    """McAdams-coefficient anonymisation, the VoicePrivacy Challenge 2020 baseline B2: 16 kHz float waves in, same length out.

    Raises AnoncliError for --alpha outside [0.1, 1.5] or equal to 1, or an unusable backend
    (unknown, compiled off the CPU or without numba).
    """

    name = "mcadams"
    # 16 kHz, not the input's own rate: LPC order 20 over 20 ms is tuned for
    # 16 kHz speech (VoicePrivacy works at 16 kHz); at 8 kHz the same order
    # would fit noise, at 44.1 kHz it could not model the formants, and alpha
    # would act on a different frequency axis for each corpus. The engine
    # resamples in and out, so the output keeps the input's rate.
    sample_rate = 16000
    window_ms = 20.0
    shift_ms = 10.0
    lpc_order = 20
    options_class = McAdamsOptions

    def __init__(self, options: MethodOptions):
        super().__init__(options)
        self.settings: McAdamsOptions
        alpha = self.settings.alpha
        if alpha is not None and not (ALPHA_MIN <= alpha <= ALPHA_MAX):
            raise AnoncliError(
                f"--alpha {alpha} is out of range: the McAdams coefficient must be in "
                f"[{ALPHA_MIN}, {ALPHA_MAX}] (1 leaves the voice unchanged; 0.5-0.9 is the usual range)"
            )
        if alpha == 1:
            raise AnoncliError(
                f"--alpha {alpha}: 1 leaves the voice unchanged, which is no anonymization "
                "(--method identity is the control that keeps it); 0.5-0.9 is the usual range"
            )
        self.backend = self._choose_backend(self.settings.backend)
        # The compiled kernel works on numpy arrays: the worker then never imports torch.
        self.tensor_inputs = self.backend != "compiled"
        self.win_len, self.shift = frame_sizes(self.sample_rate, self.window_ms, self.shift_ms)
        self._kernel_settings: np.ndarray | None = None  # loaded by prepare(): numba costs ~0.5 s to start
        if self.backend == "compiled":
            self._window_np = sqrt_hann_window_array(self.win_len, self.shift)
        else:
            self.window = sqrt_hann_window(self.win_len, self.shift)

    def _choose_backend(self, requested: str) -> str:
        if requested not in BACKENDS:
            raise AnoncliError(f"unknown McAdams backend {requested!r} (choose from: {', '.join(BACKENDS)})")
        if requested == "compiled":
            if self.device_type != "cpu":
                raise AnoncliError("the compiled McAdams backend runs on the CPU only; use --device cpu")
            if not compiled_kernel_available():
                raise AnoncliError("the compiled McAdams backend needs numba (pip install numba)")
            return "compiled"
        if requested == "torch":
            return "torch"
        return "compiled" if self.device_type == "cpu" and compiled_kernel_available() else "torch"

    def prepare(self) -> None:
        """Load the compiled kernel (numba's on-disk cache; compiled in a child process on first use)."""
        if self.backend == "compiled" and self._kernel_settings is None:
            self._kernel_settings = _load_compiled_kernel()

    def utterance_params(self, utt: Utterance) -> dict[str, Any]:
        highpass = self.settings.highpass
        if self.settings.alpha is not None:
            return {"alpha": float(self.settings.alpha), "highpass": highpass}
        rng = np.random.default_rng(self.utterance_seed(utt))
        return {"alpha": float(rng.uniform(*ALPHA_RANGE)), "highpass": highpass}

    def config(self) -> dict[str, Any]:
        return {
            "window_ms": self.window_ms,
            "shift_ms": self.shift_ms,
            "lpc_order": self.lpc_order,
            "window": "sqrt-hann (periodic), overlap-adds to 1",
            "lpc": "autocorrelation + Levinson-Durbin",
            "alpha_range": list(ALPHA_RANGE) if self.settings.alpha is None else None,
            "per_speaker": bool(self.options.per_speaker),
            "output_level": f"local: each frame's gain matches output and input energy over +-{LEVEL_REACH_FRAMES} frames",
            "pre_filter": f"DC and rumble removed before analysis: x - mean, minus 3 passes of a {RUMBLE_WINDOW_MS:g} ms "
            "centred moving average; the output level follows the filtered input",
        }

    def process(self, waves: Sequence[Any], params: list[dict[str, Any]]) -> list[MethodOutput]:
        """One `MethodOutput` (audio at 16 kHz, the input's level along the file) per wave.

        waves: 1-D float signals at 16 kHz, numpy arrays or torch tensors;
        each output has the type of its input (float32). params: dicts with
        "alpha" (in [ALPHA_MIN, ALPHA_MAX], else AnoncliError) and optionally
        "highpass" (remove DC and rumble first).
        """
        if len(waves) != len(params):
            raise ValueError(f"{len(waves)} waves but {len(params)} parameter sets")
        alphas = [float(p["alpha"]) for p in params]
        for alpha in alphas:
            if not (ALPHA_MIN <= alpha <= ALPHA_MAX):
                raise AnoncliError(f"McAdams alpha {alpha} is out of range [{ALPHA_MIN}, {ALPHA_MAX}]")
        width = _odd(round(self.sample_rate * RUMBLE_WINDOW_MS / 1000))
        if self.backend == "compiled":
            self.prepare()
            outputs = []
            for wave, param, alpha in zip(waves, params, alphas):
                array = wave if isinstance(wave, np.ndarray) else wave.detach().cpu().numpy()
                if param.get("highpass"):
                    array = remove_rumble_array(array, width)
                shaped = self._compiled(array, alpha)
                outputs.append(MethodOutput(audio=shaped if isinstance(wave, np.ndarray) else _tensor(shaped)))
            return outputs
        import torch

        from anoncli.dsp.batched import mcadams_batch

        given_arrays = [isinstance(w, np.ndarray) for w in waves]
        waves = [torch.from_numpy(w).to(self.device) if is_array else w for w, is_array in zip(waves, given_arrays)]
        waves = [remove_rumble(w, width) if p.get("highpass") else w for w, p in zip(waves, params)]
        nonempty = [i for i, w in enumerate(waves) if w.numel()]
        results = (
            mcadams_batch(
                [waves[i] for i in nonempty],
                [alphas[i] for i in nonempty],
                self.window.to(self.device),
                self.shift,
                self.lpc_order,
            )
            if nonempty
            else []
        )
        shaped = [torch.zeros(w.shape[0], dtype=torch.float64, device=self.device) for w in waves]
        for i, result in zip(nonempty, results):
            shaped[i] = result
        outs = [out.to(wave.device, torch.float32) for out, wave in zip(shaped, waves)]
        return [MethodOutput(audio=out.cpu().numpy() if is_array else out) for out, is_array in zip(outs, given_arrays)]

    def _compiled(self, source: np.ndarray, alpha: float) -> np.ndarray:
        """One utterance (1-D numpy) through the compiled kernel (which levels the frames), float32 out."""
        from anoncli.dsp.mcadams_kernel import mcadams_overlap_add

        layout = FrameLayout(int(source.shape[0]), self.win_len, self.shift)
        if layout.length == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.zeros(layout.padded_length, dtype=np.float64)
        padded[layout.lead : layout.lead + layout.length] = source
        out = np.zeros_like(padded)
        mcadams_overlap_add(
            padded, layout.n_frames, self.shift, self._window_np, self.lpc_order, alpha, out, self._kernel_settings
        )
        return out[layout.lead : layout.lead + layout.length].astype(np.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(array)


def _load_compiled_kernel() -> np.ndarray:
    """Compile (first run) or load (numba's on-disk cache) the kernel now.

    Each forked worker runs this as it starts (the engine's preload), while
    the parent still sets up the run; loading it in the parent before the
    fork was measured slower (docs/benchmarks.md). Returns the kernel's
    settings array.
    """
    from anoncli.dsp.mcadams_kernel import ensure_cached, kernel_settings, mcadams_overlap_add, remove_rumble_kernel

    ensure_cached()  # first use: compiled in a child process, so this one runs the cached machine code
    settings = kernel_settings()
    mcadams_overlap_add(np.zeros(3), 2, 1, np.ones(2), 20, 0.8, np.zeros(3), settings)
    remove_rumble_kernel(np.zeros(3), 3)
    return settings


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def remove_rumble_array(wave: np.ndarray, width: int) -> np.ndarray:
    """`remove_rumble` for the compiled CPU path: float64 (n,) out for a 1-D float array in, without torch.

    The same arithmetic and the same bits as the torch version on one CPU
    thread (`anoncli.dsp.mcadams_kernel.remove_rumble_kernel`: the mean
    summed in torch's order, sequential running sums).
    """
    from anoncli.dsp.mcadams_kernel import remove_rumble_kernel

    return remove_rumble_kernel(np.ascontiguousarray(wave, dtype=np.float64), int(width))


def remove_rumble(wave: torch.Tensor, width: int) -> torch.Tensor:
    """DC and sub-audible rumble removed, zero phase, as float64 on the wave's device.

    wave: 1-D tensor. The mean is subtracted (a constant becomes exact
    zeros), then the local mean: three passes of a centred boxcar of `width`
    (odd) samples, zero beyond the ends, each a difference of running sums
    (O(n) time and memory, the same arithmetic on CPU and GPU).
    """
    import torch

    x = wave.to(torch.float64)
    if x.numel() == 0:
        return x
    x = x - x.mean()
    local = x
    for _ in range(3):
        local = _centred_boxcar(local, width)
    return x - local


def _centred_boxcar(x: torch.Tensor, width: int) -> torch.Tensor:
    import torch

    half = width // 2
    sums = torch.cumsum(torch.nn.functional.pad(x, (half + 1, half)), 0)
    return (sums[width:] - sums[:-width]) / width
