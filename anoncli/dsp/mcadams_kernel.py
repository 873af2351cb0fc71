"""Compiled McAdams kernel for the CPU (numba), vectorised across frames.

Why compiled loops and not batched torch ops on the CPU (measured on the
2-core development machine, for the 30 400 frames = 304 s one worker handles):
`torch.linalg.eigvals` of the 20x20 companion matrices takes 1.2 s, a batched
torch Aberth-Ehrlich iteration 0.15 s per iteration (10-11 iterations from a
cold start, memory-bound temporaries), `torchaudio.functional.lfilter` with
per-frame coefficients 0.6 s (float32) / 2.0 s (float64). Here every stage
works on a block of frames of one utterance at a time, with the frame index as
the innermost, contiguous axis: the compiler turns those loops into SIMD code
and the block stays in cache.

The algorithm, its conventions and constants are exactly those of the batched
torch implementation in `anoncli.dsp.batched` (used on GPUs); each frame is
transformed independently of its neighbours and levelled from the energies of
its own utterance's frames only, so the output of an utterance does not depend
on which other utterances share its batch.

The DC and rumble removal before it (`remove_rumble_kernel`, with the mean
summed in torch's order by `ordered_sum`) is compiled too, with the same bits
as the torch version. Compiled code is cached on disk (`cache=True`, in a
writable folder, see `_writable_cache`); `ensure_cached` compiles it in a
child process on first use, so that every run executes the cached code.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np


def _writable_cache() -> None:
    """Point numba's on-disk cache at a writable folder before numba is imported.

    `cache=True` writes the compiled kernel next to this file (its
    `__pycache__`). Where the package folder is read-only (a system-wide
    install), the kernel goes to `$NUMBA_CACHE_DIR` if set, else
    `$ANONCLI_CACHE/numba` (default `~/.cache/anoncli/numba`): compiled once
    on first use, loaded from there by every later process. Without this,
    numba would pick its own per-user folder, or recompile in every process.
    """
    if "numba" in sys.modules or os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(here, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else here, os.W_OK):
        return
    root = os.environ.get("ANONCLI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "anoncli"
    )
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(root, "numba")


_writable_cache()

from numba import njit  # noqa: E402  (after the cache folder is chosen)

from anoncli.dsp import constants  # noqa: E402

# The shared constants travel as an argument, not as globals: numba's on-disk
# cache is keyed on this file only, so globals from constants.py would stay
# frozen at their values of the first compilation.
_NOISE_FLOOR, _MAX_ITERATIONS, _MIN_RADIUS, _REAL_TOL, _STEP_TOL, _ANGLE_OFFSET, _LEVEL_REACH = range(7)


def kernel_settings() -> np.ndarray:
    """The shared numerical constants (`anoncli.dsp.constants`) as the kernel's float64 settings array.

    Raises ValueError when LEVEL_REACH_FRAMES exceeds BLOCK_FRAMES (the kernel levels a block's frames
    from its own and the next block's energies only).
    """
    if not 0 <= constants.LEVEL_REACH_FRAMES <= BLOCK_FRAMES:
        raise ValueError(f"LEVEL_REACH_FRAMES must be in [0, {BLOCK_FRAMES}], not {constants.LEVEL_REACH_FRAMES}")
    return np.array(
        [
            constants.LPC_NOISE_FLOOR,
            constants.MAX_ABERTH_ITERATIONS,
            constants.MIN_START_RADIUS,
            constants.REAL_ROOT_TOL,
            constants.ROOT_STEP_TOL,
            constants.START_ANGLE_OFFSET,
            constants.LEVEL_REACH_FRAMES,
        ],
        dtype=np.float64,
    )


# Frames per block: big enough for long SIMD loops, small enough for L2 cache.
BLOCK_FRAMES = 64
# Let LLVM reorder sums and contract to FMA; no assumptions about NaN or inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def _autocorrelation(x, n, r):
    """r[k, f] = sum_t x[t, f] x[t - k, f] for the first n frames (columns)."""
    p = r.shape[0] - 1
    win_len = x.shape[0]
    for k in range(p + 1):
        for f in range(n):
            r[k, f] = 0.0
        for t in range(k, win_len):
            for f in range(n):
                r[k, f] += x[t, f] * x[t - k, f]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _levinson(r, n, a, previous, err, acc, settings):
    """Autocorrelations r[:, f] -> monic LPC polynomials a[:, f] (Levinson-Durbin)."""
    p = a.shape[0] - 1
    for f in range(n):
        err[f] = r[0, f] * (1.0 + settings[_NOISE_FLOOR])
        a[0, f] = 1.0
        for j in range(1, p + 1):
            a[j, f] = 0.0
    for i in range(1, p + 1):
        for f in range(n):
            acc[f] = r[i, f]
        for j in range(1, i):
            for f in range(n):
                acc[f] += a[j, f] * r[i - j, f]
        for j in range(i + 1):
            for f in range(n):
                previous[j, f] = a[j, f]
        for f in range(n):
            # A degenerate frame (prediction error exhausted) keeps the order reached so far.
            reflection = -acc[f] / err[f] if err[f] > 0.0 else 0.0
            acc[f] = reflection
            err[f] *= 1.0 - reflection * reflection
        for j in range(1, i):
            for f in range(n):
                a[j, f] = previous[j, f] + acc[f] * previous[i - j, f]
        for f in range(n):
            a[i, f] = acc[f]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _aberth(a, n, zr, zi, converged, work, settings):
    """Roots zr + i*zi of z^p + a1 z^(p-1) + ... + ap for the first n columns of a.

    Simultaneous Aberth-Ehrlich iterations from points on a circle of the
    roots' geometric-mean radius. Frames whose largest correction falls below
    the step tolerance are written back and dropped from the working set, so the
    slow few do not hold the others. converged[f] says whether frame f made it.
    """
    p = a.shape[0] - 1
    min_radius = settings[_MIN_RADIUS]
    angle_offset = settings[_ANGLE_OFFSET]
    step_tol = settings[_STEP_TOL]
    cr, ci, vr, vi, sr, si, pr, pim, coef, largest, index, iterations = work
    for f in range(n):
        index[f] = f
        converged[f] = False
        radius = abs(a[p, f]) ** (1.0 / p)
        if radius < min_radius:
            radius = min_radius
        for i in range(p):
            angle = (2.0 * math.pi * i + angle_offset) / p
            cr[i, f] = radius * math.cos(angle)
            ci[i, f] = radius * math.sin(angle)
        for k in range(p + 1):
            coef[k, f] = a[k, f]
    active = n
    for _ in range(int(settings[_MAX_ITERATIONS])):
        if active == 0:
            break
        for f in range(active):
            largest[f] = 0.0
        # Gauss-Seidel order: root i is corrected with the already corrected roots 0..i-1.
        for i in range(p):
            # Horner: value = P(z_i), slope = P'(z_i).
            for f in range(active):
                vr[0, f] = 1.0
                vi[0, f] = 0.0
                sr[0, f] = 0.0
                si[0, f] = 0.0
            for k in range(1, p + 1):
                for f in range(active):
                    xr = cr[i, f]
                    xi = ci[i, f]
                    tr = sr[0, f] * xr - si[0, f] * xi + vr[0, f]
                    ti = sr[0, f] * xi + si[0, f] * xr + vi[0, f]
                    sr[0, f] = tr
                    si[0, f] = ti
                    ur = vr[0, f] * xr - vi[0, f] * xi + coef[k, f]
                    ui = vr[0, f] * xi + vi[0, f] * xr
                    vr[0, f] = ur
                    vi[0, f] = ui
            # pull = sum over j != i of 1 / (z_i - z_j)
            for f in range(active):
                pr[0, f] = 0.0
                pim[0, f] = 0.0
            for j in range(p):
                if j == i:
                    continue
                for f in range(active):
                    dr = cr[i, f] - cr[j, f]
                    di = ci[i, f] - ci[j, f]
                    inv = 1.0 / (dr * dr + di * di + 1e-300)
                    pr[0, f] += dr * inv
                    pim[0, f] -= di * inv
            for f in range(active):
                # ratio = value / slope; step = ratio / (1 - ratio * pull)
                inv = 1.0 / (sr[0, f] * sr[0, f] + si[0, f] * si[0, f] + 1e-300)
                qr = (vr[0, f] * sr[0, f] + vi[0, f] * si[0, f]) * inv
                qi = (vi[0, f] * sr[0, f] - vr[0, f] * si[0, f]) * inv
                er = 1.0 - (qr * pr[0, f] - qi * pim[0, f])
                ei = -(qr * pim[0, f] + qi * pr[0, f])
                inv2 = 1.0 / (er * er + ei * ei + 1e-300)
                step_r = (qr * er + qi * ei) * inv2
                step_i = (qi * er - qr * ei) * inv2
                cr[i, f] -= step_r
                ci[i, f] -= step_i
                size = abs(step_r) + abs(step_i)
                if size > largest[f]:
                    largest[f] = size
        iterations[0] += active
        # Retire converged frames, compact the rest to the front.
        kept = 0
        for f in range(active):
            home = index[f]
            if largest[f] <= step_tol:
                converged[home] = True
                for i in range(p):
                    zr[i, home] = cr[i, f]
                    zi[i, home] = ci[i, f]
            else:
                if kept != f:
                    index[kept] = home
                    for i in range(p):
                        cr[i, kept] = cr[i, f]
                        ci[i, kept] = ci[i, f]
                    for k in range(p + 1):
                        coef[k, kept] = coef[k, f]
                kept += 1
        active = kept


@njit(cache=True, nogil=True)
def _companion_roots(a, f, zr, zi):
    """Fallback for the rare frame Aberth does not settle: eigenvalues of the companion matrix."""
    p = a.shape[0] - 1
    companion = np.zeros((p, p), dtype=np.complex128)
    for k in range(p):
        companion[0, k] = -a[k + 1, f]
    for k in range(1, p):
        companion[k, k - 1] = 1.0
    eig = np.linalg.eigvals(companion)
    for i in range(p):
        zr[i, f] = eig[i].real
        zi[i, f] = eig[i].imag


@njit(cache=True, nogil=True)
def _rotated_polynomials(zr, zi, n, alpha, b, wr, wi, real_tol):
    """Rotate complex poles (phi -> sign(phi)|phi|^alpha, |phi| <= pi) and expand b = prod (1 - z_i/z)."""
    p = zr.shape[0]
    for i in range(p):
        for f in range(n):
            if abs(zi[i, f]) > real_tol:
                magnitude = math.hypot(zr[i, f], zi[i, f])
                angle = math.atan2(zi[i, f], zr[i, f])
                new_angle = min(abs(angle) ** alpha, math.pi)
                if angle < 0.0:
                    new_angle = -new_angle
                zr[i, f] = magnitude * math.cos(new_angle)
                zi[i, f] = magnitude * math.sin(new_angle)
    _expand(zr, zi, n, b, wr, wi)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _expand(zr, zi, n, b, wr, wi):
    p = zr.shape[0]
    for k in range(p + 1):
        for f in range(n):
            wr[k, f] = 1.0 if k == 0 else 0.0
            wi[k, f] = 0.0
    for i in range(p):
        for k in range(i + 1, 0, -1):
            for f in range(n):
                # w[k] -= z_i * w[k - 1]
                xr = zr[i, f]
                xi = zi[i, f]
                wr[k, f] -= xr * wr[k - 1, f] - xi * wi[k - 1, f]
                wi[k, f] -= xr * wi[k - 1, f] + xi * wr[k - 1, f]
    for k in range(p + 1):
        for f in range(n):
            b[k, f] = wr[k, f]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _filter_frames(a, b, x, n, y):
    """y = x * A(z) / B(z) per frame (column), zero initial state, truncated to the frame."""
    p = a.shape[0] - 1
    win_len = x.shape[0]
    for t in range(win_len):
        for f in range(n):
            y[t, f] = x[t, f]
        for k in range(1, min(t, p) + 1):
            for f in range(n):
                y[t, f] += a[k, f] * x[t - k, f]
    for t in range(win_len):
        for k in range(1, min(t, p) + 1):
            for f in range(n):
                y[t, f] -= b[k, f] * y[t - k, f]


@njit(cache=True, nogil=True, fastmath=_FAST)
def _frame_energies(x, y, n, window, live, source, produced):
    """source[m], produced[m]: energy of input frame x[:, f] and output frame y[:, f] (frame m = live[f]), synthesis-windowed."""
    win_len = x.shape[0]
    for f in range(n):
        s = 0.0
        q = 0.0
        for t in range(win_len):
            u = x[t, f] * window[t]
            v = y[t, f] * window[t]
            s += u * u
            q += v * v
        source[live[f]] = s
        produced[live[f]] = q


@njit(cache=True, nogil=True)
def _overlap_add_leveled(y, live, n, window, shift, source, produced, reach, out):
    """out += gain * y[:, f] * window at frame live[f]'s place, for the first n columns of y.

    gain = sqrt(input energy / output energy) summed over the frames within `reach` of the frame
    (zero beyond the ends), 1 where either sum is zero: `local_level_gains` of `anoncli.dsp.batched`.
    """
    win_len = window.shape[0]
    n_frames = source.shape[0]
    for f in range(n):
        m = live[f]
        s = 0.0
        q = 0.0
        for j in range(max(0, m - reach), min(n_frames, m + reach + 1)):
            s += source[j]
            q += produced[j]
        gain = math.sqrt(s / q) if s > 0.0 and q > 0.0 else 1.0
        start = m * shift
        for t in range(win_len):
            out[start + t] += y[t, f] * gain * window[t]


@njit(cache=True, nogil=True)
def mcadams_overlap_add(padded, n_frames, shift, window, order, alpha, out, settings):
    """Transform every frame of one padded utterance, level each frame, and overlap-add into `out`.

    padded: float64 signal of length (n_frames - 1) * shift + len(window);
    out: float64 zeros of the same length; settings: `kernel_settings()`.
    Each frame's output is scaled so that, over the frames within
    `LEVEL_REACH_FRAMES` of it, output and input energies (after the
    synthesis window) match: the level follows the input's along the file.
    A block's frames are overlap-added once the next block's energies are
    known (the reach is at most a block). Returns (frames that needed the
    eigenvalue fallback, frame-iterations of Aberth-Ehrlich) for diagnostics.
    """
    win_len = window.shape[0]
    p = order
    nb = BLOCK_FRAMES
    reach = min(int(settings[_LEVEL_REACH]), nb)
    x = np.empty((win_len, nb))
    ys = np.empty((2, win_len, nb))
    lives = np.empty((2, nb), dtype=np.int64)
    counts = np.zeros(2, dtype=np.int64)
    source = np.zeros(n_frames)
    produced = np.zeros(n_frames)
    r = np.empty((p + 1, nb))
    a = np.empty((p + 1, nb))
    b = np.empty((p + 1, nb))
    previous = np.empty((p + 1, nb))
    err = np.empty(nb)
    acc = np.empty(nb)
    zr = np.empty((p, nb))
    zi = np.empty((p, nb))
    wr = np.empty((p + 1, nb))
    wi = np.empty((p + 1, nb))
    converged = np.empty(nb, dtype=np.bool_)
    work = (
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p, nb)),
        np.empty((p + 1, nb)),
        np.empty(nb),
        np.empty(nb, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
    )
    fallbacks = 0
    block = 0
    for first in range(0, n_frames, nb):
        slot = block % 2
        y = ys[slot]
        live = lives[slot]
        # Gather the block's windowed frames that are not all zero: those contribute nothing.
        n = 0
        for m in range(first, min(first + nb, n_frames)):
            start = m * shift
            nonzero = False
            for t in range(win_len):
                value = padded[start + t] * window[t]
                x[t, n] = value
                if value != 0.0:
                    nonzero = True
            if nonzero:
                live[n] = m
                n += 1
        counts[slot] = n
        if n > 0:
            _autocorrelation(x, n, r)
            _levinson(r, n, a, previous, err, acc, settings)
            _aberth(a, n, zr, zi, converged, work, settings)
            for f in range(n):
                if not converged[f]:
                    _companion_roots(a, f, zr, zi)
                    fallbacks += 1
            _rotated_polynomials(zr, zi, n, alpha, b, wr, wi, settings[_REAL_TOL])
            _filter_frames(a, b, x, n, y)
            _frame_energies(x, y, n, window, live, source, produced)
        if block > 0:  # the previous block's frames now have every neighbour's energy
            other = 1 - slot
            _overlap_add_leveled(ys[other], lives[other], counts[other], window, shift, source, produced, reach, out)
        block += 1
    if block > 0:
        last = (block - 1) % 2
        _overlap_add_leveled(ys[last], lives[last], counts[last], window, shift, source, produced, reach, out)
    return fallbacks, work[-1][0]


def _cached_in_index() -> bool:
    """Whether numba's on-disk cache holds a current build of `mcadams_overlap_add` (True when unsure)."""
    try:
        return bool(mcadams_overlap_add._cache._cache_file._load_index())
    except Exception:  # numba internals moved: assume cached, numba then compiles in-process as usual
        return True


def ensure_cached(timeout_s: float = 600.0) -> bool:
    """Compile the kernel into numba's on-disk cache in a child process if it is not there; True if it compiled.

    Why a child: the machine code numba runs right after compiling in a
    process gives slightly different floating-point results (about 1e-12,
    now and then one 16-bit step in a sample) from the same kernel loaded
    from its cache in every later process. Compiling in a child and loading
    the result here means every run, the first one included, computes the
    same bits. Takes about 10 s once per installation (or per change of
    this file); a failing child leaves the compilation to this process.
    """
    if _cached_in_index():
        return False
    import subprocess

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    code = (
        "import numpy as np; from anoncli.dsp.mcadams_kernel import kernel_settings, mcadams_overlap_add, "
        "remove_rumble_kernel; mcadams_overlap_add(np.zeros(3), 2, 1, np.ones(2), 20, 0.8, np.zeros(3), "
        "kernel_settings()); remove_rumble_kernel(np.zeros(3), 3)"
    )
    try:
        subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            check=True,
            timeout=timeout_s,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    global _compiled_in_child
    _compiled_in_child = True
    return True


_compiled_in_child = False  # set when this process had ensure_cached compile the kernel


def cache_state() -> dict:
    """Where numba keeps the compiled kernel and whether this process loaded it from there.

    {"cache_dir": folder, "loaded_from_cache": True/False/None (None: not
    called yet in this process), "compiled_here": bool, "compiled_in_child":
    bool (this process had `ensure_cached` compile it, then loaded it)}.
    """
    stats = mcadams_overlap_add.stats
    hits, misses = sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
    return {
        "cache_dir": stats.cache_path,
        "loaded_from_cache": (hits > 0) if hits or misses else None,
        "compiled_here": misses > 0,
        "compiled_in_child": _compiled_in_child,
    }


# Lanes of the vector sum `ordered_sum` reproduces (torch's 256-bit Vectorized<double>), and its cascade.
_SUM_LANES = 4
_SUM_ILP = 4
_SUM_LEVELS = 4


@njit(cache=True, nogil=True)
def ordered_sum(x):
    """Sum of a float64 1-D array in the order of torch's single-threaded CPU sum kernel (no fastmath).

    The DC removal before McAdams subtracts the mean; earlier versions took
    it with torch (`x.mean()`, one thread), whose cascade of 4 x 4-lane
    accumulators rounds differently from numpy's pairwise sum. Summing in the
    same order keeps the outputs bit for bit as before, on every machine,
    without importing torch. Checked against torch on arrays of 1 to 2e6
    samples (tests/test_lean_path.py).
    """
    n = x.shape[0]
    lanes = _SUM_LANES
    if n < lanes:
        total = 0.0
        for i in range(n):
            total += x[i]
        return total
    n_vec = n // lanes
    rows = n_vec // _SUM_ILP
    # cascade levels: max(4, ceil(log2(rows)) // 4) bits per level
    ceil_log2 = 1
    if rows > 2:
        ceil_log2 = 0
        v = rows - 1
        while v > 0:
            ceil_log2 += 1
            v >>= 1
    level_power = max(4, ceil_log2 // _SUM_LEVELS)
    step = 1 << level_power
    mask = step - 1
    acc = np.zeros((_SUM_LEVELS, _SUM_ILP, lanes))
    i = 0
    while i + step <= rows:
        for j in range(step):
            base = (i + j) * _SUM_ILP * lanes
            for k in range(_SUM_ILP):
                for lane in range(lanes):
                    acc[0, k, lane] += x[base + k * lanes + lane]
        for level in range(1, _SUM_LEVELS):
            for k in range(_SUM_ILP):
                for lane in range(lanes):
                    acc[level, k, lane] += acc[level - 1, k, lane]
                    acc[level - 1, k, lane] = 0.0
            if ((i + step) & (mask << (level * level_power))) != 0:
                break
        i += step
    while i < rows:
        base = i * _SUM_ILP * lanes
        for k in range(_SUM_ILP):
            for lane in range(lanes):
                acc[0, k, lane] += x[base + k * lanes + lane]
        i += 1
    for level in range(1, _SUM_LEVELS):
        for k in range(_SUM_ILP):
            for lane in range(lanes):
                acc[0, k, lane] += acc[level, k, lane]
    vec = acc[0, 0].copy()
    for r in range(rows * _SUM_ILP, n_vec):
        for lane in range(lanes):
            vec[lane] += x[r * lanes + lane]
    for k in range(1, _SUM_ILP):
        for lane in range(lanes):
            vec[lane] += acc[0, k, lane]
    total = 0.0
    for i in range(n_vec * lanes, n):
        total += x[i]
    for lane in range(lanes):
        total += vec[lane]
    return total


@njit(cache=True, nogil=True)
def remove_rumble_kernel(x, width):
    """`anoncli.methods.mcadams.remove_rumble` compiled, the same bits: float64 (n,) in and out.

    x minus its mean (summed in torch's order, `ordered_sum`), minus three
    passes of a centred boxcar of `width` (odd) samples, zero beyond the
    ends, each the difference of a running sum (sequential, as numpy and
    torch compute it), divided by `width`. No fastmath: every operation
    rounds as in the array versions.
    """
    n = x.shape[0]
    out = np.empty(n)
    if n == 0:
        return out
    mean = ordered_sum(x) / n
    centred = np.empty(n)
    for i in range(n):
        centred[i] = x[i] - mean
    local = centred.copy()
    half = width // 2
    sums = np.empty(n + width)
    for _ in range(3):
        acc = 0.0
        for j in range(n + width):
            k = j - half - 1
            if 0 <= k < n:
                acc += local[k]
            else:
                acc += 0.0
            sums[j] = acc
        for i in range(n):
            local[i] = (sums[i + width] - sums[i]) / width
    for i in range(n):
        out[i] = centred[i] - local[i]
    return out
