"""A progress bar for the command line. The library never draws one: its long operations take
a ``progress(done, total, label)`` callback, and the CLI passes :meth:`Bar.update`."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Bar:
    """Draws ``label [#####.....] 12/40`` on one line of a terminal, and nothing at all when the
    stream is not a terminal (a pipe, a file, CI logs)."""

    def __init__(self, label: str, stream: TextIO | None = None, *, enabled: bool = True):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.active = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int, text: str = "") -> None:
        if not self.active:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 28
        filled = int(width * done / total) if total else width
        line = f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}"[:120]
        self.stream.write(line.ljust(120))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.active and self._drawn:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
