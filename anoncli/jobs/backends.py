"""Executors that run batches in parallel (the concurrent.futures interface, so backends are interchangeable).

Local CPU workers are forked: they inherit the already imported torch and
start in milliseconds, where spawned workers (joblib's loky) re-import it and
cost about 3 s per run on 2 cores, which dominates jobs of a few minutes of
audio. CUDA cannot be used after fork, so GPU runs spawn their workers.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor

BACKENDS = ("process", "joblib")


def _init_worker() -> None:
    import torch

    # One torch thread per worker: N workers on N cores, no oversubscription.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def local_executor(jobs: int, device: str = "cpu", backend: str | None = None) -> Executor:
    backend = backend or os.environ.get("ANONCLI_BACKEND", "process")
    if backend == "joblib":
        from joblib.externals.loky import get_reusable_executor

        return _NonClosing(get_reusable_executor(max_workers=jobs, initializer=_init_worker))
    method = "spawn" if device.startswith("cuda") else "fork"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker)


class _NonClosing:
    """A reusable loky executor stays alive for the next run in this process."""

    def __init__(self, executor: Executor):
        self._executor = executor

    def submit(self, *args, **kwargs):
        return self._executor.submit(*args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
