"""``python -m s3cse``: the command line."""

from .cli import main

main()
