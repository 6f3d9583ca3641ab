"""atheris fuzz target: the metadata and instruction-file parsers.

    python tests/fuzz/fuzz_metadata.py -runs=100000     # or without -runs for a soak

Any exception other than s3cse's own error types is a finding.
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports():
    import s3cse
    from s3cse.core import metadata

FIELDS = sorted(metadata.crypto_metadata_keys())


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    try:
        if mode == 0:
            s3cse.decode_instruction_file(fdp.ConsumeBytes(fdp.remaining_bytes()))
            return
        fields = {}
        for _ in range(fdp.ConsumeIntInRange(0, 12)):
            name = (
                FIELDS[fdp.ConsumeIntInRange(0, len(FIELDS) - 1)]
                if fdp.ConsumeBool()
                else fdp.ConsumeUnicodeNoSurrogates(12)
            )
            fields[name] = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
        instruction = None
        if mode == 2:
            try:
                instruction = json.loads(fdp.ConsumeUnicodeNoSurrogates(200))
            except ValueError:
                instruction = {}
            if not isinstance(instruction, dict):
                instruction = {}
            instruction = {str(k): str(v) for k, v in instruction.items()}
        s3cse.parse_metadata(fields, instruction)
    except s3cse.S3CSEError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
