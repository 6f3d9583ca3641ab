"""Writes the fsspec benchmark's Parquet file: the same bytes for the same row count.

    python bench/make_parquet.py PATH ROWS

Run by bench/run.py in a process of its own (building the DataFrame peaks at about
830 MiB, and on Linux a child process starts from its parent's peak RSS).
Columns: id (int64, 0..rows-1), amount (float64, normal), score (float64, uniform),
quantity (int32), customer ("customer-<up to 9 digits>" strings) and city (one of 12
names, dictionary-encoded); no compression, pyarrow's default row groups (2^20 rows).
3,950,000 rows make about 195 MiB.
"""

from __future__ import annotations

import sys
from pathlib import Path


def make_parquet(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(20240601)
    cities = np.array(["Amsterdam", "Berlin", "Cairo", "Delhi", "Lagos", "Lima",
                       "Oslo", "Paris", "Quito", "Seoul", "Tokyo", "Zagreb"])
    customers = pc.binary_join_element_wise(
        "customer-", pc.cast(pa.array(rng.integers(0, 10**9, rows)), pa.string()), ""
    )
    frame = pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "amount": rng.normal(100.0, 25.0, rows),
        "score": rng.random(rows),
        "quantity": rng.integers(0, 1_000_000, rows, dtype=np.int32),
        "customer": pd.array(customers, dtype="str"),
        "city": pd.array(cities[rng.integers(0, len(cities), rows)], dtype="str"),
    })
    frame.to_parquet(path, compression=None)


if __name__ == "__main__":
    make_parquet(Path(sys.argv[1]), int(sys.argv[2]))
