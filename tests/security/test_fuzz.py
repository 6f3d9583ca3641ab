"""Runs the atheris target for a bounded number of inputs (S3CSE_SOAK=1: many more)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).parents[1] / "fuzz" / "fuzz_metadata.py"
#: The target's memory bound. Not libFuzzer's -rss_limit_mb: it reads the peak RSS from
#: getrusage, which Linux carries over from this (pytest) process into the child at
#: exec, so a suite that once used 2.5 GB failed the fuzzer before it ran an input. An
#: address-space limit is the child's own: a parser blowing up raises MemoryError there,
#: which the target reports as a finding.
_TARGET_ADDRESS_SPACE = 6 * 1024**3


def _bound_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_TARGET_ADDRESS_SPACE, _TARGET_ADDRESS_SPACE))


@pytest.mark.slow
def test_atheris_metadata_target():
    pytest.importorskip(
        "atheris", reason="atheris is in the test extra; it has no wheel for this platform"
    )
    runs = 5_000_000 if os.environ.get("S3CSE_SOAK") == "1" else 80_000
    proc = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-runs={runs}",
            "-max_len=512",
            "-rss_limit_mb=0",
            "-print_final_stats=1",
        ],
        capture_output=True,
        preexec_fn=_bound_memory,
        timeout=1800,
        cwd=Path(__file__).parents[2],
    )
    output = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert "Done" in output
