"""The benchmark's own machinery: its turns, its report and its target checks.

A tiny matrix, fsspec comparison and lag measurement run for real (worker processes
against the session's servers); the target checks are fed figures on either side of
each threshold.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench_run():
    spec = importlib.util.spec_from_file_location("s3cse_bench_run", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_combine_takes_the_median_of_every_turn_and_the_highest_peak(bench_run):
    measured = [
        {"seconds": [1.0, 3.0], "peak_rss_mib": 70.0, "baseline_rss_mib": 60.0},
        {"seconds": [2.0], "peak_rss_mib": 90.0, "baseline_rss_mib": 58.0},
    ]
    result = bench_run.combine(measured, total=4 * 1024 * 1024, count=2)
    assert result["seconds"] == [1.0, 3.0, 2.0]
    assert result["mib_s"] == pytest.approx(2.0) and result["objects_s"] == pytest.approx(1.0)
    assert result["peak_rss_mib"] == 90.0 and result["baseline_rss_mib"] == 58.0
    assert bench_run.combine([measured[0], {"error": ["boom"]}], 1, 1) == {"error": ["boom"]}


def _row(size, impl, op, mib_s, keyring="none", rss=60.0):
    return {
        "size": size,
        "impl": impl,
        "op": op,
        "keyring": keyring,
        "mib_s": mib_s,
        "objects_s": mib_s,
        "peak_rss_mib": rss,
    }


@pytest.mark.parametrize("ratio, met", [(0.59, False), (0.61, True)])
def test_the_authenticated_get_target_is_judged_at_0_6x(bench_run, ratio, met):
    results = [_row("256 MiB", "boto3", "get", 1000.0)]
    results += [_row("256 MiB", "s3cse", "get", 1000.0 * ratio, k) for k in ("aes", "rsa", "kms")]
    targets = {
        name: ok for name, _measured, _value, ok in bench_run.check_targets(results, ["256 MiB"])
    }
    assert targets["get_object authenticated >= 0.6x boto3, 256 MiB, kms"] is met
    assert targets["get_object delayed auth >= 0.8x boto3, 256 MiB, kms"] is None  # not measured


def test_the_rss_target_is_a_ceiling(bench_run):
    results = [
        _row("256 MiB", "s3cse", "put", 100.0, "kms", rss=130.0),
        _row("256 MiB", "official", "put", 100.0, "kms", rss=1000.0),
        _row("256 MiB", "s3cse", "get", 100.0, "kms", rss=120.0),
        _row("256 MiB", "official", "get", 100.0, "kms", rss=1000.0),
    ]
    targets = {name: ok for name, _m, _v, ok in bench_run.check_targets(results, ["256 MiB"])}
    assert targets["put peak RSS <= 1/8 of official S3EC, 256 MiB"] is False  # 0.13x
    assert targets["get peak RSS <= 1/8 of official S3EC, 256 MiB"] is True  # 0.12x


@pytest.mark.seaweedfs_only("the benchmark measures on SeaweedFS, the embedded default")
def test_a_tiny_matrix_runs_end_to_end(bench_run, servers, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "SIZES", {"1 KiB": (1024, 3)})
    monkeypatch.setattr(bench_run, "READ_REPEATS", {"1 KiB": 2})
    monkeypatch.setattr(
        bench_run,
        "CONFIGS",
        [
            ("boto3", "none", ("put", "get")),
            ("s3cse", "aes", ("put", "get", "get_delayed")),
        ],
    )
    bench = bench_run.Bench(servers, tmp_path, repeat=2)
    results = bench_run.run_matrix(bench, ["1 KiB"])
    assert {(r["impl"], r["op"]) for r in results} == {
        ("boto3", "put"),
        ("boto3", "get"),
        ("s3cse", "put"),
        ("s3cse", "get"),
        ("s3cse", "get_delayed"),
    }
    for r in results:
        assert "error" not in r, r
        assert len(r["seconds"]) == (4 if r["op"].startswith("get") else 2)  # 2 turns x repeats
        assert r["objects_s"] > 0 and r["peak_rss_mib"] >= r["baseline_rss_mib"] > 0
    targets = bench_run.write_markdown(results, ["1 KiB"], tmp_path / "results.md")
    table = (tmp_path / "results.md").read_text()
    assert "| 1 KiB | get (delayed auth) |" in table and "obj/s" in table
    assert any(
        name.startswith("1 KiB get objects/s") and ok is not None for name, _m, _v, ok in targets
    )
    bench_run.write_chart(results, ["1 KiB"], tmp_path / "results.png")
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(results)  # what results.json holds


@pytest.mark.parametrize("ratio, met", [(0.89, False), (0.91, True)])
def test_the_fsspec_targets_are_judged_at_0_9x_s3fs(bench_run, ratio, met):
    results = []
    for op in bench_run.FSSPEC_OPS:
        results += [
            _row(bench_run.PARQUET, "s3fs", op, 100.0),
            _row(bench_run.PARQUET, "s3cse", op, 100.0 * ratio, "aes"),
        ]
    targets = {name: ok for name, _m, _v, ok in bench_run.check_targets(results, [])}
    fsspec = {name: ok for name, ok in targets.items() if "s3cse://" in name}
    assert len(fsspec) == 3 and set(fsspec.values()) == {met}


def test_the_lag_targets_are_ceilings_in_ms(bench_run):
    label = bench_run.lag_label()
    results = [
        {
            "size": label,
            "impl": "s3cse",
            "keyring": "kms",
            "op": "aio_lag_unsigned",
            "p50_ms": 1.0,
            "p99_ms": 20.0,
            "worst_ms": 51.0,
        },
        {
            "size": label,
            "impl": "s3cse",
            "keyring": "kms",
            "op": "aio_lag_signed",
            "p50_ms": 1.0,
            "p99_ms": 49.0,
            "worst_ms": 90.0,
        },
        {
            "size": label,
            "impl": "aiobotocore",
            "keyring": "none",
            "op": "aio_lag_unsigned",
            "p50_ms": 1.0,
            "p99_ms": 20.0,
            "worst_ms": 50.0,
        },
    ]
    targets = {
        name: (measured, ok) for name, measured, _v, ok in bench_run.check_targets(results, [])
    }
    # s3cse's worst stall against plain aiobotocore's moving the same bytes: 51 / 50
    assert targets[
        f"asyncio loop lag worst <= plain aiobotocore's, unsigned payloads, {label}"
    ] == ("1.02x", False)
    assert targets[f"asyncio loop lag p99 < 50 ms, s3cse, signed payloads (HTTP), {label}"] == (
        "49.00 ms",
        True,
    )


def test_turns_rotate_so_nobody_always_goes_last(bench_run):
    configs = [("a", "x"), ("b", "x"), ("c", "x")]
    order = [impl for impl, _ in bench_run.turn_order(configs, 3)]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


@pytest.mark.seaweedfs_only("the benchmark measures on SeaweedFS, the embedded default")
def test_a_tiny_fsspec_comparison_runs_end_to_end(bench_run, servers, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "PARQUET_ROWS", 5000)
    monkeypatch.setattr(bench_run, "FSSPEC_READ_REPEATS", 2)
    results = bench_run.run_fsspec(bench_run.Bench(servers, tmp_path, repeat=1))
    assert {(r["impl"], r["op"]) for r in results} == {
        (impl, op) for impl, _ in bench_run.FSSPEC_CONFIGS for op in bench_run.FSSPEC_OPS
    }
    for r in results:
        assert "error" not in r, r
        assert len(r["seconds"]) == (1 if r["op"] == "to_parquet" else 2) and r["mib_s"] > 0
    targets = bench_run.write_markdown(results, [], tmp_path / "fsspec.md")
    assert "| read_parquet, one column |" in (tmp_path / "fsspec.md").read_text()
    assert len(targets) == 3 and all(ok is not None for _n, _m, _v, ok in targets)
    json.dumps(results)


@pytest.mark.seaweedfs_only("the benchmark measures on SeaweedFS, the embedded default")
def test_a_tiny_lag_measurement_runs_end_to_end(bench_run, servers, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "LAG_SIZE", 16 * 1024 * 1024)
    results = bench_run.run_aio_lag(bench_run.Bench(servers, tmp_path, repeat=1))
    assert {(r["impl"], r["op"]) for r in results} == {
        (impl, f"aio_lag_{p}") for impl, p in bench_run.LAG_CONFIGS
    }
    for r in results:
        assert "error" not in r, r
        assert r["turns"][0]["ticks"] > 0 and 0 <= r["p50_ms"] <= r["p99_ms"] <= r["worst_ms"]
    targets = bench_run.write_markdown(results, [], tmp_path / "aio_lag.md")
    assert "| plain aiobotocore, same moves |" in (tmp_path / "aio_lag.md").read_text()
    assert len(targets) == 2 and all(ok is not None for _n, _m, _v, ok in targets)
    json.dumps(results)


@pytest.mark.seaweedfs_only("the benchmark measures on SeaweedFS, the embedded default")
def test_a_tiny_cli_comparison_runs_end_to_end(bench_run, servers, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "CLI_FILES", 5)
    results = bench_run.run_cli(bench_run.Bench(servers, tmp_path, repeat=1))
    assert {(r["impl"], r["keyring"], r["op"]) for r in results} == {
        (impl, keyring, op) for impl, keyring in bench_run.CLI_CONFIGS for op in bench_run.CLI_OPS
    }
    for r in results:
        assert "error" not in r, r
        assert len(r["seconds"]) == 1 and r["objects_s"] > 0
    targets = bench_run.write_markdown(results, [], tmp_path / "cli.md")
    assert "| cp --recursive, download |" in (tmp_path / "cli.md").read_text()
    assert len(targets) == 4 and all(ok is not None for _n, _m, _v, ok in targets)
    json.dumps(results)


@pytest.mark.parametrize("ratio, met", [(0.99, False), (1.01, True)])
def test_the_cli_targets_are_1x_aws_with_aes_and_0_6x_with_kms(bench_run, ratio, met):
    label = bench_run.cli_label()
    results = []
    for op in bench_run.CLI_OPS:
        results.append({**_row(label, "aws", op, 100.0), "seconds": [1.0]})
        results.append({**_row(label, "s3cse", op, 100.0 * ratio, "aes"), "seconds": [1.0]})
        results.append({**_row(label, "s3cse", op, 60.0 * ratio, "kms"), "seconds": [1.0]})
    targets = {name: ok for name, _m, _v, ok in bench_run.check_targets(results, [])}
    assert len(targets) == 4 and set(targets.values()) == {met}


@pytest.mark.seaweedfs_only("the benchmark measures on SeaweedFS, the embedded default")
def test_a_tiny_batch_measurement_runs_end_to_end(bench_run, servers, tmp_path, monkeypatch):
    mib = 1024 * 1024
    monkeypatch.setattr(
        bench_run, "BATCH_REWRAP_SIZES", [("1 KiB", 4, 1024), ("9 MiB", 1, 9 * mib)]
    )
    monkeypatch.setattr(bench_run, "BATCH_UPGRADE", (1, 2 * mib))
    monkeypatch.setattr(bench_run, "BATCH_MANY", 20)
    monkeypatch.setattr(bench_run, "BATCH_REWRAP_TURNS", 2)
    results = bench_run.run_batch(bench_run.Bench(servers, tmp_path, repeat=1))
    for r in results:
        assert "error" not in r, r
    assert {(r["op"], r["impl"]) for r in results} >= {
        ("rewrap", "s3cse"),
        ("upgrade", "s3cse"),
        ("upgrade", "boto3"),
        ("census", "pool"),
        ("census", "dask"),
        ("rewrap", "dask"),
    }
    targets = bench_run.write_markdown(results, [], tmp_path / "batch.md")
    assert "| upgrade |" in (tmp_path / "batch.md").read_text()
    assert len(targets) == 2 and all(ok is not None for _n, _m, _v, ok in targets)
