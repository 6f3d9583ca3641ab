"""Security suite helpers: a report of the tamper corpus in the terminal summary."""

from __future__ import annotations

from typing import Any

CORPUS_REPORT: dict[str, Any] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CORPUS_REPORT:
        terminalreporter.write_line(
            f"tamper corpus: {CORPUS_REPORT['cases']} cases, {CORPUS_REPORT['passed']} passed; "
            f"{CORPUS_REPORT['ignored']} of them plant a duplicate instruction file that is never "
            f"read and must yield the genuine plaintext; plus {CORPUS_REPORT['benign']} benign "
            "edits of the plaintext-length hint that must still decrypt"
        )
