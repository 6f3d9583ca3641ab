"""Runs the atheris target for a bounded number of inputs (S3CSE_SOAK=1: many more)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).parents[1] / "fuzz" / "fuzz_metadata.py"


@pytest.mark.slow
def test_atheris_metadata_target():
    pytest.importorskip(
        "atheris", reason="atheris is in the test extra; it has no wheel for this platform"
    )
    runs = 5_000_000 if os.environ.get("S3CSE_SOAK") == "1" else 200_000
    proc = subprocess.run(
        [sys.executable, str(TARGET), f"-runs={runs}", "-max_len=512", "-print_final_stats=1"],
        capture_output=True,
        timeout=1800,
        cwd=Path(__file__).parents[2],
    )
    output = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert "Done" in output
