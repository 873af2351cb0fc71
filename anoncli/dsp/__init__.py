"""Signal-processing building blocks: frame layout and windows, the McAdams transform, pitch.

`framing` (frame layout, perfect-reconstruction window, overlap-add),
`batched` (the McAdams transform batched in torch; GPU path),
`mcadams_kernel` (the same transform compiled with numba; CPU path),
`constants` (numerical conventions both paths share),
`pitch` (F0 tracking with octave-error correction, F0 Pearson correlation).
"""
