"""Model weights as safetensors files (no pickled code), through the `safetensors` library.

Format (https://github.com/huggingface/safetensors): a JSON header naming each
tensor's dtype, shape and byte range, an optional string-to-string
`__metadata__`, then the raw tensor bytes. Loading a file never runs code
from it, which is why shipped weights use this format.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from anoncli.atomic import atomic_path
from anoncli.errors import AnoncliError


def save_file(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write `tensors` (name -> tensor; moved to the CPU, made contiguous) atomically to `path`.

    metadata: strings stored in the header (`__metadata__`). Raises OSError
    when `path` cannot be written.
    """
    from safetensors.torch import save_file as write

    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    with atomic_path(path) as tmp:
        write(cpu, str(tmp), metadata={str(k): str(v) for k, v in (metadata or {}).items()} or None)


def load_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) from a safetensors file.

    Raises AnoncliError naming the file when it cannot be read or is not a
    valid safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except FileNotFoundError:
        raise AnoncliError(f"{path}: cannot read model weights (no such file)") from None
    except OSError as err:
        raise AnoncliError(f"{path}: cannot read model weights ({err.strerror or err})") from None
    except (SafetensorError, ValueError) as err:
        raise AnoncliError(f"{path}: not a valid safetensors file ({str(err).splitlines()[0]})") from None
    return tensors, metadata
