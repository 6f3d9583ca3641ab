"""The ``s3cse`` command: `aws s3 cp` that encrypts, plus keys, inspection, rotation,
batch jobs and the embedded local servers. A shell over EncryptionClient and the batch
layer; no crypto here. The group lives in ``_app``; each module of commands registers
its own on it when imported here."""

from __future__ import annotations

from . import _jobs, _listing, _local, _transfer
from ._app import EXIT_CODES_HELP, CliError, in_cli_terms, main
from ._transfer import local_destination

__all__ = [
    "EXIT_CODES_HELP",
    "CliError",
    "in_cli_terms",
    "local_destination",
    "main",
]

# The command modules, imported for the commands they register on ``main``.
_COMMANDS = (_jobs, _listing, _local, _transfer)
