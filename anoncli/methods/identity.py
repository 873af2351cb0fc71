"""Identity: passes audio through unchanged. NOT an anonymization.

It exists as a control: evaluating its output measures what the pipeline
itself (decode, resample, 16-bit encode) costs, and it is the reference row
"original" in privacy/utility tables. It copies numpy arrays as they come
(no torch needed) and clones tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anoncli.methods.base import Method, MethodOutput


class Identity(Method):
    """Passes audio through unchanged at the input's own rate: a control, not an anonymisation."""

    name = "identity"
    control = True
    sample_rate = None
    tensor_inputs = False

    def process(self, waves: Sequence[Any], params: list[dict]) -> list[MethodOutput]:
        """A copy of each wave (numpy array or torch tensor, same type out)."""
        return [MethodOutput(audio=w.copy() if isinstance(w, np.ndarray) else w.clone()) for w in waves]
