"""Option parsing shared by several commands."""

from anoncli.errors import AnoncliError


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """`--param key=value` pairs into a dict, with a one-line error for a malformed pair."""
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AnoncliError(f"--param {pair!r}: expected KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


def _cuda_available() -> bool:
    """Whether torch sees a CUDA GPU; without importing torch (about 1 s) where no NVIDIA device can be visible."""
    import glob
    import os

    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    if not (glob.glob("/dev/nvidia[0-9]*") or glob.glob("/proc/driver/nvidia/gpus/*")):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu; refuse cuda without a GPU."""
    device = device.lower()
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device.startswith("cuda") and not _cuda_available():
        raise AnoncliError("--device cuda: no CUDA GPU is visible on this machine (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise AnoncliError(f"--device {device!r}: expected auto, cpu or cuda")
    return device


def layout_help() -> str:
    """Help text of --layout, listing the registered layouts."""
    from anoncli.corpus.layouts import LAYOUTS

    return f"Corpus layout: auto (detect) or one of {', '.join(sorted(LAYOUTS))}."


def check_backend(backend: str, scheduler: str | None) -> None:
    """`--backend local|dask` and `--scheduler`, which only a Dask backend takes."""
    from anoncli.parallel import BACKENDS

    if backend not in BACKENDS:
        raise AnoncliError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if scheduler and backend != "dask":
        raise AnoncliError(f"--scheduler {scheduler}: needs --backend dask")
