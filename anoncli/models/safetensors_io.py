"""Read and write the safetensors format (no pickled code) without the safetensors package.

Format (https://github.com/huggingface/safetensors, "Format"): an 8-byte
little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name
to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the byte
buffer that follows; an optional "__metadata__" maps strings to strings),
then the raw little-endian tensor bytes. Files written here are readable by
`safetensors.torch.load_file`, and files it writes (for the dtypes below) by
`load_file` here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from anoncli.errors import AnoncliError

_DTYPES = {
    "F32": (torch.float32, np.float32), "F64": (torch.float64, np.float64), "F16": (torch.float16, np.float16),
    "I64": (torch.int64, np.int64), "I32": (torch.int32, np.int32), "I16": (torch.int16, np.int16),
    "I8": (torch.int8, np.int8), "U8": (torch.uint8, np.uint8), "BOOL": (torch.bool, np.bool_),
}
_NAMES = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}
MAX_HEADER_BYTES = 100_000_000


def save_file(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (name -> CPU tensor of a supported dtype) atomically to `path`."""
    header: dict = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        if tensor.dtype not in _NAMES:
            raise ValueError(f"{name}: dtype {tensor.dtype} not supported")
        array = tensor.numpy()
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NAMES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for blob in blobs:
            handle.write(blob)
    os.replace(tmp, path)


def load_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a safetensors file; AnoncliError naming the file if it is not one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise AnoncliError(f"{path}: cannot read model weights ({err.strerror})") from None
    try:
        size = int.from_bytes(raw[:8], "little")
        if len(raw) < 8 or size > min(MAX_HEADER_BYTES, len(raw) - 8):
            raise ValueError("bad header length")
        header = json.loads(raw[8:8 + size].decode("utf-8"))
        base = 8 + size
        metadata = header.pop("__metadata__", {}) or {}
        tensors = {}
        for name, info in header.items():
            torch_dtype, np_dtype = _DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            if not 0 <= begin <= end <= len(raw) - base:
                raise ValueError(f"{name}: data outside the file")
            little = np.dtype(np_dtype).newbyteorder("<")
            array = np.frombuffer(raw, dtype=little, count=(end - begin) // little.itemsize, offset=base + begin)
            tensors[name] = torch.from_numpy(array.astype(np_dtype).reshape(info["shape"]).copy()).to(torch_dtype)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise AnoncliError(f"{path}: not a valid safetensors file ({err})") from None
    return tensors, dict(metadata)
