"""Progress on stderr: a redrawn bar on a terminal, plain lines in a log.

`progress_bar` returns a tqdm bar when stderr is a terminal, and otherwise a
`PlainProgress` that writes one line every `step_percent` percent of the work
(and when it ends), never a carriage-return redraw, so a log file, a pipeline
or a SLURM job output holds a readable line per step instead of thousands of
repainted bars. Both take the same calls: iteration, `update`,
`set_postfix`, `set_description`, `close`, and use as a context manager.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

STEP_PERCENT = 5.0
# With no known total, a line at most this often.
UNKNOWN_TOTAL_INTERVAL_S = 30.0


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (False when it is closed or replaced by an object without isatty)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:d}:{rest % 60:02d}"


class PlainProgress:
    """tqdm's interface, printing a plain line per `step_percent` of `total` (or per 30 s without one)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        file: TextIO | None = None,
        step_percent: float = STEP_PERCENT,
        **_: Any,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.disable = disable
        self.file = file or sys.stderr
        self.n = 0
        self._postfix = ""
        self._step = max(step_percent, 0.1)
        self._next_percent = self._step
        self._start = time.monotonic()
        self._last_line = self._start
        self._closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("PlainProgress without an iterable cannot be iterated")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        """Set the label printed before the count (tqdm-compatible)."""
        self.desc = desc

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Set the `key=value` pairs printed after the count (tqdm-compatible)."""
        values = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def refresh(self) -> None:
        """Nothing: lines are printed by `update` (tqdm-compatible)."""
        pass

    def update(self, n: float = 1) -> None:
        """Count `n` more; print a line each `step_percent` of the total, or every 30 s without a total."""
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        if self.total:
            percent = 100.0 * self.n / self.total
            if percent >= self._next_percent and self.n < self.total:
                self._line(now)
                while self._next_percent <= percent:
                    self._next_percent += self._step
        elif now - self._last_line >= UNKNOWN_TOTAL_INTERVAL_S:
            self._line(now)

    def close(self) -> None:
        """Print the final line (once; nothing when disabled or nothing was counted)."""
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n:
            self._line(time.monotonic(), final=True)

    def _line(self, now: float, final: bool = False) -> None:
        self._last_line = now
        elapsed = now - self._start
        count = f"{self.n:g}" if isinstance(self.n, float) else str(self.n)
        parts = [f"{self.desc}: " if self.desc else "", count]
        if self.total:
            parts.append(f"/{self.total:g} {self.unit} ({100.0 * self.n / self.total:.0f}%)")
        else:
            parts.append(f" {self.unit}")
        parts.append(f", elapsed {_clock(elapsed)}")
        if self.total and self.n and not final:
            parts.append(f", eta {_clock(elapsed * (self.total - self.n) / self.n)}")
        if self._postfix:
            parts.append(f", {self._postfix}")
        if final:
            parts.append(", done" if not self.total or self.n >= self.total else ", stopped")
        self.file.write("".join(parts) + "\n")
        self.file.flush()

    @staticmethod
    def write(message: str, file: TextIO | None = None) -> None:
        """Print `message` on `file` (default stderr), flushed (tqdm-compatible)."""
        print(message, file=file or sys.stderr, flush=True)


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool | None = True,
    log_step_percent: float = STEP_PERCENT,
    **tqdm_options: Any,
):
    """A progress bar on stderr: tqdm on a terminal, `PlainProgress` lines otherwise.

    enabled: False shows nothing (`--no-progress`); True or None shows progress
    in the form that suits stderr. log_step_percent: in a log, one line per
    this much of the work (100 for the bar of one epoch: one line per epoch).
    Extra keyword arguments go to tqdm only.
    """
    disable = enabled is False
    if stderr_is_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, **tqdm_options)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, disable=disable, step_percent=log_step_percent)


def write(message: str) -> None:
    """A line on stderr that does not break a bar being drawn."""
    if stderr_is_terminal():
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        PlainProgress.write(message)
