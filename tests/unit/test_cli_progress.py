"""The command line's progress display, drawn on a stand-in terminal."""

from __future__ import annotations

import io
import re

from s3cse.cli.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drawn(monkeypatch, job) -> str:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("COLUMNS", "200")
    with Progress(objects=True) as progress:
        assert progress.shown
        job(progress)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())


def test_a_batch_job_shows_objects_their_rates_and_the_time_left(monkeypatch):
    def job(progress):
        done = progress.job("upgrade manifest.csv", total=4)
        for size in (1000, 2000, 3000):
            done(size)

    text = _drawn(monkeypatch, job)
    last = text.strip().splitlines()[-1]
    assert "upgrade manifest.csv" in last and "3/4" in last
    assert "objects/s" in last and "6.0 kB at" in last and "/s" in last
    assert re.search(r"\d:\d\d:\d\d", last)  # the time left, with a total


def test_a_listing_without_a_total_shows_no_time_left(monkeypatch):
    text = _drawn(monkeypatch, lambda progress: progress.job("census s3://b/p/")(10))
    last = text.strip().splitlines()[-1]
    assert "1/?" in last and "objects/s" in last
    assert not re.search(r"\d:\d\d:\d\d", last)


def test_no_display_when_standard_error_is_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    with Progress(objects=True) as progress:
        assert not progress.shown
        progress.job("census", 3)(5)
    assert stream.getvalue() == ""


def test_a_rotation_shows_objects_without_sizes(monkeypatch):
    def job(progress):
        done = progress.job("rotating s3://b/p/", sizes=False)
        done(0)
        done(0)

    last = _drawn(monkeypatch, job).strip().splitlines()[-1]
    assert "2/?" in last and "objects/s" in last and " B" not in last
