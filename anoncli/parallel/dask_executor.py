"""Batches as tasks on a Dask `distributed` cluster: an existing one, or a local one started for the run.

Guarantees the job engine relies on:
- Workers write their own outputs and manifest batch files (process_batch does
  it); tasks return only small counts, and the driver merges nothing in memory.
- The method (model weights) is built once per worker: a worker plugin builds it
  when the worker joins, before any task, and process_batch's per-process cache
  reuses it for every task on that worker.
- A worker that dies (killed, out of memory, node lost) has its tasks
  rescheduled on the other workers by the scheduler; a batch that had already
  written outputs or its manifest batch file before dying is simply redone
  (outputs are replaced atomically; finalize_part keeps one row per utt_id).
  Tasks that raise are retried `retries` times.
- Results are fetched as soon as each task ends, and the executor keeps only
  weak references to the tasks, so they are released and a worker lost later
  does not make the cluster recompute finished batches.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from anoncli.errors import AnoncliError

# Task-level retries for exceptions inside a task (a lost worker is handled by the scheduler).
TASK_RETRIES = 2
CONNECT_TIMEOUT_S = 30
# A local cluster shares the cores with its own workers, so its monitors poll less often than the
# defaults (memory every 100 ms, system every 500 ms, event-loop ticks every 20 ms); that saved
# roughly 1 CPU second per 20-second run on 2 cores (a noisy measurement).
LOCAL_CLUSTER_QUIET = {
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "200ms",
}


def _worker_plugin_class():
    from distributed.diagnostics.plugin import WorkerPlugin

    class PreloadPlugin(WorkerPlugin):
        """Runs `preload` once on every worker, including workers that join later."""

        def __init__(self, preload: Callable[[], object]):
            self.preload = preload

        def setup(self, worker) -> None:
            """Run `preload` on this worker."""
            self.preload()

    return PreloadPlugin


class DaskExecutor:
    """`submit(fn, *args)` -> concurrent.futures.Future, run as a Dask task."""

    def __init__(
        self,
        jobs: int = 1,
        scheduler: str | None = None,
        preload: Callable[[], object] | None = None,
        retries: int = TASK_RETRIES,
        device: str = "cpu",
    ):
        self.jobs = max(1, jobs)
        self.device = device
        self.scheduler = scheduler
        self.preload = preload
        self.retries = retries
        self.client = None
        self._cluster = None
        self._executor = None
        self._plugin_name: str | None = None
        self._dask_config = None

    def __enter__(self) -> DaskExecutor:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise AnoncliError(
                "--backend dask needs the 'distributed' package (pip install 'dask[distributed]')"
            ) from None
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError, ValueError) as err:
                raise AnoncliError(f"--scheduler {self.scheduler}: cannot connect ({err})") from None
        else:
            import dask

            # Forked workers inherit the imported torch and start in about 0.5 s instead of 5-8 s
            # (spawn re-imports everything); CUDA cannot be used after fork, so GPU workers spawn.
            # The setting stays in force while the cluster lives, for workers the nannies restart.
            start_method = "spawn" if self.device.startswith("cuda") else "fork"
            self._dask_config = dask.config.set(
                {"distributed.worker.multiprocessing-method": start_method, **LOCAL_CLUSTER_QUIET}
            )
        try:
            if not self.scheduler:
                # Processes, one thread each: N single-threaded torch workers on N cores.
                self._cluster = LocalCluster(
                    n_workers=self.jobs,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self._cluster)
            if self.preload is not None:
                self._plugin_name = f"anoncli-preload-{uuid.uuid4().hex[:12]}"
                self.client.register_plugin(_worker_plugin_class()(self.preload), name=self._plugin_name)
            self._executor = self.client.get_executor(pure=False, retries=self.retries)
        except BaseException:
            self._close()
            raise
        return self

    def submit(self, fn, *args, **kwargs):
        """Schedule `fn(*args, **kwargs)` as a Dask task (retried `retries` times if it raises); returns a concurrent.futures.Future."""
        return self._executor.submit(fn, *args, **kwargs)

    def __exit__(self, *exc) -> bool:
        self._close()
        return False

    def _close(self) -> None:
        if self.client is not None and self._plugin_name is not None and self.scheduler:
            # A shared cluster must not keep preloading our method on workers that join later.
            try:
                self.client.unregister_worker_plugin(self._plugin_name)
            except Exception:  # the cluster may be gone already; nothing left to clean
                pass
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._dask_config is not None:
            self._dask_config.__exit__(None, None, None)
        self.client = self._cluster = self._executor = self._dask_config = None
