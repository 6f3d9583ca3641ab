"""Progress bars on a terminal (rich): one bar per file and a total for recursive copies."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "printable"]


class Progress:
    """A context manager handing out byte-count callbacks; silent when disabled or when
    standard error is not a terminal."""

    def __init__(self, enabled: bool = True):
        self._enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._total_task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self._enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}", justify="left"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def total(self, size: int) -> None:
        """Add an overall bar (recursive copies)."""
        if self._progress is not None:
            self._total_task = self._progress.add_task("total", total=size)

    def task(self, description: str, size: int | None) -> Callable[[int], None]:
        """A callback for one transfer: call it with each count of bytes moved."""
        if self._progress is None:
            return lambda n: None
        task_id = self._progress.add_task(description, total=size)

        def advance(n: int) -> None:
            with self._lock:
                self._progress.advance(task_id, n)
                if self._total_task is not None:
                    self._progress.advance(self._total_task, n)

        return advance

    def counter(self, description: str) -> Callable[[int], None]:
        """A callback counting items (rotation), shown without a known total."""
        if self._progress is None:
            return lambda n: None
        task_id = self._progress.add_task(description, total=None)
        return lambda n: self._progress.advance(task_id, n)

    def log(self, message: str) -> None:
        """A status line (``upload: ./f to s3://b/f``) on standard output, as aws prints
        it; above the bars when both go to the terminal. Control characters (from key or
        file names) are shown escaped, never sent to the terminal."""
        message = printable(message)
        if self._progress is not None and sys.stdout.isatty():
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, flush=True)


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, newlines, DEL, C1) shown as
    ``\\xNN`` / ``\\uNNNN`` escapes, so a name cannot move the cursor or fake a line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)
