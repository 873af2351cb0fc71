"""Sample GPU utilisation in a background thread while a benchmark runs (no-op without a GPU).

Uses `torch.cuda.utilization()` (needs the NVML bindings) and falls back to
`nvidia-smi`. Import it from any benchmark script:

    from gpu_monitor import GpuMonitor
    with GpuMonitor() as gpu:
        run()
    print(gpu.summary())     # e.g. "GPU utilisation: mean 87 %, max 100 % (41 samples)" or None
"""

from __future__ import annotations

import shutil
import subprocess
import threading


def _torch_reader():
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        torch.cuda.utilization()  # raises when NVML is missing
        return lambda: float(torch.cuda.utilization())
    except Exception:
        return None


def _smi_reader():
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None

    def read() -> float:
        text = subprocess.run(
            [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return float(text.split()[0])

    try:
        read()
    except Exception:
        return None
    return read


class GpuMonitor:
    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._read = _torch_reader() or _smi_reader()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._read is not None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(self._read())
            except Exception:
                return

    def __enter__(self) -> GpuMonitor:
        if self.available:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return False

    def summary(self) -> str | None:
        if not self.samples:
            return None
        mean = sum(self.samples) / len(self.samples)
        return f"GPU utilisation: mean {mean:.0f} %, max {max(self.samples):.0f} % ({len(self.samples)} samples)"
