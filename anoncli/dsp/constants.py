"""Numerical conventions shared by the compiled (CPU) and batched torch (GPU) McAdams paths.

Both paths must agree on these so that they give the same output up to rounding.
"""

# Relative white-noise floor added to the zero-lag autocorrelation: keeps
# Levinson-Durbin well conditioned on degenerate frames (a lone click, a pure
# tone) and changes speech frames by far less than 16-bit quantisation.
LPC_NOISE_FLOOR = 1e-9

# A pole whose imaginary part is at most this is real and stays where it is.
# Rotating such a pole would move it by less than ~1e-6 anyway.
REAL_ROOT_TOL = 1e-8

# Aberth-Ehrlich stops on a frame once every root moved by less than this
# (|dRe| + |dIm|); convergence is cubic, so the roots are then far more
# accurate than this.
ROOT_STEP_TOL = 1e-6
MAX_ABERTH_ITERATIONS = 50

# Starting points: a circle of radius |a_p|^(1/p) (the roots' geometric mean),
# at least MIN_START_RADIUS, with angles offset so that no point is real.
MIN_START_RADIUS = 0.1
START_ANGLE_OFFSET = 0.5

# Output level: each frame's output is scaled so that the energy of the frames within this many
# frames on either side (10 ms shift: 50 -> a 1.01 s window) matches the input's energy there,
# both measured after the synthesis window. The level then follows the input's level along the
# file (a long quiet stretch keeps its level whatever the loud parts do), while within speech the
# filters' own gain differences between neighbouring frames stay as the transform makes them.
# Measured on 12 LibriSpeech files (STOI against the input, alpha 0.5 / 0.7 / 0.9): one gain for
# the whole file 0.669 / 0.780 / 0.945, this 0.657 / 0.769 / 0.943, half this reach 0.635 / 0.756 /
# 0.941, every frame on its own 0.04-0.10 below the whole-file gain.
# Must not exceed the compiled kernel's block of frames (64).
LEVEL_REACH_FRAMES = 50
