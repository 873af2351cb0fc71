"""Executors that run tasks in parallel, behind one factory so every command can use any backend.

Callers build an executor and pass it in: the job engine runs its batches on
one, `evaluate` its feature extraction. Nothing here knows what a task does.
`make_executor(backend, jobs, device, scheduler)` returns a context-managed
object with the concurrent.futures `submit` interface whose futures work with
`concurrent.futures.wait`/`as_completed`:

- local, CPU: forked worker processes. They inherit the already imported torch
  and start in milliseconds, where spawned workers (joblib's loky) re-import it
  and cost about 3 s per run on 2 cores, which dominates jobs of a few minutes
  of audio. `ANONCLI_BACKEND=joblib` selects loky instead.
- local, CUDA, one job: threads in this process sharing one model, so decoding
  and encoding of one batch overlap with GPU compute of another
  (`anoncli.parallel.prefetch`). CUDA cannot be used after fork, so several CUDA
  jobs spawn their workers.
- dask: tasks on a `distributed` cluster (`anoncli.parallel.dask_executor`), an
  existing one at `scheduler` or a local one started for the run.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from functools import partial

from anoncli.errors import AnoncliError

BACKENDS = ("local", "dask")
LOCAL_POOLS = ("process", "joblib")


def init_worker() -> None:
    """Limit this process to one compute thread (torch, BLAS, OpenMP); run at the start of each worker.

    torch is limited only when this process has imported it: a worker of a
    lean (numpy-only) method never pays for importing it.
    """
    import sys

    from threadpoolctl import threadpool_limits

    # One thread per worker (torch and the BLAS numpy uses): N workers on N cores,
    # no oversubscription; a forked worker's idle BLAS threads otherwise spin.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    threadpool_limits(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _end_with_parent() -> None:
    """End this worker when the process that started it is gone (`kill -9`, an out-of-memory kill).

    A daemon thread checks the parent's pid once a second; an orphaned worker
    would otherwise wait for work that never comes. SIGTERM gets its default
    action again (the parent's handler is not inherited by a worker).
    """
    import signal
    import threading
    import time

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="anoncli-parent-watch", daemon=True).start()


def _start_worker(preload: Callable[[], object] | None) -> None:
    init_worker()
    _end_with_parent()
    if preload is not None:
        preload()


def local_executor(
    jobs: int, device: str = "cpu", backend: str | None = None, preload: Callable[[], object] | None = None
) -> Executor:
    """Local worker processes; `preload` runs in each as it starts (forked pools only)."""
    backend = backend or os.environ.get("ANONCLI_BACKEND", "process")
    if backend not in LOCAL_POOLS:
        raise AnoncliError(f"ANONCLI_BACKEND={backend!r}: expected one of {', '.join(LOCAL_POOLS)}")
    if backend == "joblib":
        from joblib.externals.loky import get_reusable_executor

        return _NonClosing(get_reusable_executor(max_workers=jobs, initializer=init_worker))
    method = "spawn" if device.startswith("cuda") else "fork"
    if method == "spawn":  # a spawned worker would have to unpickle `preload`; its caches load on first use
        preload = None
    return _CancelOnError(
        ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context(method),
            initializer=partial(_start_worker, preload),
        )
    )


def make_executor(
    backend: str = "local",
    jobs: int = 1,
    device: str = "cpu",
    scheduler: str | None = None,
    preload: Callable[[], object] | None = None,
):
    """A context-managed executor for `backend` with `jobs` workers on `device`.

    `preload` (picklable, no arguments) runs once per worker before its first
    task, e.g. to load model weights once per worker rather than per task.
    Forked local workers run it as they start, so the loading overlaps with
    whatever the caller still does before its first result (spawned and
    joblib workers skip it: their per-process caches load on first use).
    """
    if backend not in BACKENDS:
        raise AnoncliError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "dask":
        from anoncli.parallel.dask_executor import DaskExecutor

        return DaskExecutor(jobs=jobs, scheduler=scheduler, preload=preload, device=device)
    if scheduler:
        raise AnoncliError(f"--scheduler {scheduler}: needs --backend dask")
    if jobs <= 1 and device.startswith("cuda"):
        from anoncli.parallel.prefetch import PipelinedExecutor

        return PipelinedExecutor(preload=preload)
    return local_executor(max(1, jobs), device, preload=preload)


class _Wrapped:
    """An executor as a context manager; subclasses decide what leaving the block does."""

    def __init__(self, executor: Executor):
        self._executor = executor

    def submit(self, *args, **kwargs):
        """Schedule `fn(*args, **kwargs)` on the wrapped executor; returns its Future."""
        return self._executor.submit(*args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _CancelOnError(_Wrapped):
    """Leaving the block on an error (Ctrl-C, a failed batch) drops the queued batches instead of running them all."""

    def __exit__(self, exc_type, *exc):
        self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False


class _NonClosing(_Wrapped):
    """A reusable loky executor stays alive for the next run in this process."""
