"""Identity: passes audio through unchanged. NOT an anonymization.

It exists as a control: evaluating its output measures what the pipeline
itself (decode, resample, 16-bit encode) costs, and it is the reference row
"original" in privacy/utility tables.
"""

from __future__ import annotations

import torch

from anoncli.methods.base import Method


class Identity(Method):
    name = "identity"
    sample_rate = None

    def process(self, waves: list[torch.Tensor], params: list[dict]) -> list[torch.Tensor]:
        return [w.clone() for w in waves]
