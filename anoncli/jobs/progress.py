"""Progress on stderr: files, audio hours, real-time factor and ETA."""

from __future__ import annotations

import time

from anoncli.progress import progress_bar


class JobProgress:
    """A progress bar on stderr counting files, with audio hours, real-time factor and failures; a context manager."""

    def __init__(self, total: int, enabled: bool = True, description: str = "anonymize"):
        self._bar = progress_bar(
            total=total, unit="files", desc=description, enabled=enabled, dynamic_ncols=True, smoothing=0.1
        )
        self._audio_s = 0.0
        self._failed = 0
        self._start = time.perf_counter()

    def advance(self, files: int, audio_s: float, failed: int = 0) -> None:
        """Count `files` more files holding `audio_s` seconds of audio, `failed` of them failed."""
        self._audio_s += audio_s
        self._failed += failed
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix(
            audio_h=f"{self._audio_s / 3600:.2f}",
            xRT=f"{self._audio_s / elapsed:.0f}",
            failed=self._failed,
            refresh=False,
        )
        self._bar.update(files)

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
