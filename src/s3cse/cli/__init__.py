"""The ``s3cse`` command line."""

from .main import main

__all__ = ["main"]
