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

    def __init__(self, enabled: bool = True, *, objects: bool = False):
        self._enabled = enabled and sys.stderr.isatty()
        self._objects = objects  # a batch job's columns: objects, objects/s, bytes/s, ETA
        self._progress: Any = None
        self._total_task: Any = None
        self._files = self._done = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self._enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            columns: tuple[Any, ...] = (
                (MofNCompleteColumn(), _job_rates())
                if self._objects
                else (DownloadColumn(), TransferSpeedColumn())
            )
            self._progress = RichProgress(
                TextColumn("{task.description}", justify="left", markup=False),
                BarColumn(),
                *columns,
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
                redirect_stdout=False,  # status lines go to the real stdout (a file, a pipe)
                redirect_stderr=False,
            )
            self._progress.__enter__()
        return self

    @property
    def shown(self) -> bool:
        """Whether a display is on the terminal."""
        return self._progress is not None

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def total(self, size: int, files: int) -> None:
        """Show one overall bar, of files and bytes, instead of a bar per file (recursive
        copies)."""
        self._files, self._done = files, 0
        if self._progress is not None:
            self._total_task = self._progress.add_task(self._files_done(), total=size)

    def _files_done(self) -> str:
        return f"{self._done}/{self._files} files"

    def file_done(self) -> None:
        """One more file of the overall bar is done."""
        if self._progress is not None and self._total_task is not None:
            with self._lock:
                self._done += 1
                self._progress.update(self._total_task, description=self._files_done())

    def task(self, description: str, size: int | None) -> Callable[[int], None]:
        """A callback for one transfer: call it with each count of bytes moved."""
        if self._progress is None:
            return lambda n: None
        if self._total_task is not None:  # recursive: the overall bar only
            total = self._total_task
            return lambda n: self._progress.advance(total, n)
        task_id = self._progress.add_task(printable(description), total=size)
        return lambda n: self._progress.advance(task_id, n)

    def job(
        self, description: str, total: int | None = None, *, sizes: bool = True
    ) -> Callable[[int], None]:
        """A callback for a batch job (``objects=True``): call it with the bytes of each
        object done. Shows objects done (of ``total``, when known), objects/s, and with
        ``sizes`` the bytes and bytes/s; the time left when the total is known."""
        if self._progress is None:
            return lambda n: None
        progress = self._progress
        task_id = progress.add_task(printable(description), total=total, bytes=0, sizes=sizes)
        moved = 0

        def done(size: int) -> None:
            nonlocal moved
            moved += size
            progress.update(task_id, advance=1, bytes=moved)

        return done

    def log(self, message: str) -> None:
        """A status line (``upload: ./f to s3://b/f``) on standard output, as aws prints
        it; above the bars when both go to the terminal. Control characters (from key or
        file names) are shown escaped, never sent to the terminal."""
        message = printable(message)
        with self._lock:  # one line at a time from the workers of a recursive copy
            if self._progress is not None and sys.stdout.isatty():
                self._progress.console.print(message, markup=False, highlight=False)
            else:
                sys.stdout.write(message + "\n")
                sys.stdout.flush()


def _job_rates() -> Any:
    """A rich column (made here: rich is imported only when a display is shown)."""
    from rich import filesize
    from rich.progress import ProgressColumn
    from rich.text import Text

    class JobRates(ProgressColumn):
        """objects/s, bytes so far and bytes/s of a batch job."""

        def render(self, task: Any) -> Any:
            elapsed = task.elapsed or 0.0
            size = int(task.fields.get("bytes", 0))
            objects = task.completed / elapsed if elapsed else 0.0
            rate = int(size / elapsed) if elapsed else 0
            if not task.fields.get("sizes", True):
                return Text(f"{objects:,.0f} objects/s", style="progress.data.speed")
            return Text(
                f"{objects:,.0f} objects/s, {filesize.decimal(size)} at {filesize.decimal(rate)}/s",
                style="progress.data.speed",
            )

    return JobRates()


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
