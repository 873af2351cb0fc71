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
