"""Keep one accelerator busy: decode/encode of some batches overlaps with compute on another.

A single GPU job spends much of its time off the GPU (reading and resampling
files, encoding and writing outputs). `PipelinedExecutor` runs whole batches on
a few threads of this process that share one model: while one thread waits on
the GPU, the others decode the next batches (soundfile, numpy and torch release
the GIL) or write finished ones. At most `depth` batches are in flight, so
memory stays bounded (`depth` batches of decoded audio).

`Prefetcher` is the generic form for code that wants the loads in order:
items are loaded by background threads up to `depth` ahead of the consumer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_DEPTH = 3


class PipelinedExecutor:
    """`submit(fn, *args)` runs on one of `depth` threads; at most `depth` tasks run at once.

    `preload` runs in the calling thread before any task, so every thread finds
    the method already in the per-process cache (no two threads build it).
    """

    def __init__(self, depth: int = DEFAULT_DEPTH, preload: Callable[[], object] | None = None):
        self.depth = max(1, depth)
        self.preload = preload
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> PipelinedExecutor:
        if self.preload is not None:
            self.preload()
        self._pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix="anoncli-pipeline")
        return self

    def submit(self, fn, *args, **kwargs) -> Future:
        """Schedule `fn(*args, **kwargs)` on one of `depth` threads; returns its Future."""
        return self._pool.submit(fn, *args, **kwargs)

    def __exit__(self, *exc) -> bool:
        self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
        return False


class Prefetcher(Generic[T, R]):
    """Iterate `(item, load(item))` in order, loading up to `depth` items ahead on `threads` threads.

    A load that raises re-raises when its item is reached, not before.
    """

    def __init__(self, items: Iterable[T], load: Callable[[T], R], depth: int = 2, threads: int = 2):
        self.items = items
        self.load = load
        self.depth = max(1, depth)
        self.threads = max(1, threads)

    def __iter__(self) -> Iterator[tuple[T, R]]:
        source = iter(self.items)
        window: deque[tuple[T, Future]] = deque()
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="anoncli-prefetch") as pool:
            try:
                for item in source:
                    window.append((item, pool.submit(self.load, item)))
                    if len(window) > self.depth:
                        done_item, future = window.popleft()
                        yield done_item, future.result()
                while window:
                    done_item, future = window.popleft()
                    yield done_item, future.result()
            finally:
                for _item, future in window:
                    future.cancel()
