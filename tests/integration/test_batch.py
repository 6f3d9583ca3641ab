"""The batch layer against the local servers: census, rewrap, upgrade, encrypt and
verify over a prefix or a manifest, resumable, conditional, and the CLI over it."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import threading

import pytest

import s3cse
from s3cse import batch
from s3cse.core.suites import AlgorithmSuite
from tests.integration.test_cli import run
from tests.unit.legacy_objects import v1_aes_object

MiB = 1024 * 1024


@pytest.fixture
def keys(tmp_path):
    """(old key file, new key file) and their AES keyrings."""
    files = []
    for name in ("old.key", "new.key"):
        path = tmp_path / name
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
        files.append(str(path))
    return files


def _keyring(path):
    with open(path, "rb") as f:
        return s3cse.AesKeyring(f.read())


def _refs(path):
    return batch.KeyRefs(aes_key_files=(path,))


def _v2_writer(s3, path, **kw):
    return s3cse.EncryptionClient(
        s3,
        keyring=_keyring(path),
        commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT",
        encryption_algorithm=AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF,
        **kw,
    )


def _records(summary_or_dir):
    with open(os.path.join(summary_or_dir, "report.csv")) as f:
        return {row[1]: row for row in csv.reader(f)}


class Calls:
    """The S3 operations a client made (botocore's own events)."""

    def __init__(self, client):
        self.made = []
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model, **_):
        self.made.append(model.name)


def test_census_groups_what_is_there_needs_no_key_and_survives_planted_objects(s3, bucket, keys):
    old, _ = keys
    s3cse.EncryptionClient(s3, keyring=_keyring(old)).put_object(
        Bucket=bucket, Key="c/v3", Body=b"3" * 100
    )
    _v2_writer(s3, old).put_object(Bucket=bucket, Key="c/v2", Body=b"2" * 50)
    _v2_writer(s3, old, instruction_file_put=True).put_object(Bucket=bucket, Key="c/v2i", Body=b"i")
    with open(old, "rb") as f:
        body, metadata = v1_aes_object(f.read(), b"w" * 40)
    s3.put_object(Bucket=bucket, Key="c/v1", Body=body, Metadata=metadata)
    s3.put_object(Bucket=bucket, Key="c/plain", Body=b"p" * 7)
    s3.put_object(  # planted: crypto metadata that cannot be parsed
        Bucket=bucket, Key="c/planted", Body=b"x", Metadata={"x-amz-cek-alg": "nonsense"}
    )
    summary = batch.run(batch.JobSpec("census"), batch.from_prefix(s3, bucket, "c/"), s3=s3)
    groups = {
        group.split(",")[0] + ", " + group.rsplit(", ", 1)[1]: v
        for group, v in summary.census.items()
    }
    assert groups["V3, metadata"]["objects"] == 1
    assert groups["V2, metadata"] == {"objects": 1, "bytes": 66}
    assert groups["V2, instruction file"]["objects"] == 1
    assert groups["V1 CBC, metadata"]["objects"] == 1
    assert groups["not encrypted, -"] == {"objects": 1, "bytes": 7}
    assert summary.counts["failed"] == 1 and summary.total == 6  # the planted one, listed


def test_upgrade_streams_to_v3_keeps_every_attribute_and_a_rerun_changes_nothing(
    s3, bucket, keys, tmp_path
):
    old, new = keys
    _v2_writer(s3, old).put_object(
        Bucket=bucket,
        Key="u/small",
        Body=b"s" * 1000,
        ContentType="text/csv",
        Metadata={"owner": "team-a"},
        Tagging="class=red",
    )
    big = os.urandom(9 * MiB + 17)  # multipart: streamed, never held whole
    _v2_writer(s3, old, instruction_file_put=True).upload_fileobj(io.BytesIO(big), bucket, "u/big")
    with open(old, "rb") as f:
        body, metadata = v1_aes_object(f.read(), b"legacy " * 10)
    s3.put_object(Bucket=bucket, Key="u/v1", Body=body, Metadata=metadata)
    job = str(tmp_path / "job")
    spec = batch.JobSpec(
        "upgrade",
        keys=_refs(old),
        to_keys=_refs(new),
        legacy_wrapping=True,
        legacy_unauthenticated=True,
    )
    summary = batch.run(spec, batch.from_prefix(s3, bucket, "u/"), s3=s3, job_dir=job)
    assert summary.counts == {"succeeded": 3}, _records(job)
    reader = s3cse.EncryptionClient(s3, keyring=_keyring(new))
    got = reader.get_object(Bucket=bucket, Key="u/small")
    assert got["Body"].read() == b"s" * 1000
    user = {k.lower(): v for k, v in got["Metadata"].items()}  # rclone capitalises names
    assert got["ContentType"] == "text/csv" and user["owner"] == "team-a"
    from botocore.exceptions import ClientError

    try:
        tags = s3.get_object_tagging(Bucket=bucket, Key="u/small")["TagSet"]
    except ClientError:  # rclone's serve s3 has no object tagging
        tags = [{"Key": "class", "Value": "red"}]
    assert tags == [{"Key": "class", "Value": "red"}]
    out = io.BytesIO()
    reader.download_fileobj(bucket, "u/big", out)
    assert out.getvalue() == big
    assert reader.get_object(Bucket=bucket, Key="u/v1")["Body"].read() == b"legacy " * 10
    assert "u/big.instruction" not in [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
    ]
    for key in ("u/small", "u/big", "u/v1"):
        metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        assert int(s3cse.parse_metadata(metadata).version) == 3
    # The same job again: everything is done; nothing is written.
    calls = Calls(s3)
    again = batch.run(spec, batch.from_prefix(s3, bucket, "u/"), s3=s3, job_dir=job)
    assert again.already_done == 3 and set(calls.made) <= {"ListObjectsV2"}
    report = _records(job)
    assert report["u/big"][3] == "succeeded" and "upgraded from V2 to V3" in report["u/big"][6]
    # Another job in the same directory is refused.
    with pytest.raises(s3cse.S3CSEError, match="holds another job"):
        batch.run(batch.JobSpec("verify", keys=_refs(new)), [], s3=s3, job_dir=job)


def test_upgrade_never_replaces_an_object_that_fails_authentication_or_changed(s3, bucket, keys):
    old, _ = keys
    writer = _v2_writer(s3, old)
    writer.upload_fileobj(io.BytesIO(os.urandom(9 * MiB)), bucket, "t/big")
    writer.put_object(Bucket=bucket, Key="t/small", Body=b"genuine")
    for key in ("t/big", "t/small"):  # flip one ciphertext byte, keep the metadata
        head = s3.head_object(Bucket=bucket, Key=key)
        data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        data[3] ^= 1
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=head["Metadata"])
    before = {k: s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in ("t/big", "t/small")}
    worker = batch.JobSpec("upgrade", keys=_refs(old)).worker(s3)
    records = [worker.run(batch.Task(bucket, k)) for k in ("t/big", "t/small")]
    assert [(r.status, r.error_code) for r in records] == [("failed", "IntegrityError")] * 2
    assert {k: s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in before} == before
    try:
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except Exception:  # rclone answers NoSuchUpload when there are none
        uploads = []
    assert uploads == []  # the streamed upgrade was aborted


@pytest.mark.seaweedfs_only("rclone's serve s3 ignores If-Match on PUT (S3 honours it)")
def test_upgrade_never_overwrites_another_writers_object(s3, bucket, keys):
    old, _ = keys
    writer = _v2_writer(s3, old)
    worker = batch.JobSpec("upgrade", keys=_refs(old)).worker(s3)
    # Another writer between the read and the write: a conflict, their object stays.
    writer.put_object(Bucket=bucket, Key="t/raced", Body=b"ours")
    real_get = s3.get_object
    fired = threading.Event()

    def get_then_race(**kwargs):
        response = real_get(**kwargs)
        if kwargs.get("Key") == "t/raced" and not fired.is_set():
            fired.set()
            s3.put_object(Bucket=bucket, Key="t/raced", Body=b"theirs")
        return response

    s3.get_object = get_then_race
    try:
        record = worker.run(batch.Task(bucket, "t/raced"))
    finally:
        del s3.get_object
    assert record.status == "conflict", record
    assert real_get(Bucket=bucket, Key="t/raced")["Body"].read() == b"theirs"


def test_encrypt_in_place_rewrap_without_moving_content_and_verify(s3, bucket, keys, tmp_path):
    old, new = keys
    s3.put_object(Bucket=bucket, Key="e/a.txt", Body=b"plain a", ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="e/b.bin", Body=os.urandom(3000), Metadata={"k": "v"})
    done = batch.run(
        batch.JobSpec("encrypt", to_keys=_refs(old)), batch.from_prefix(s3, bucket, "e/"), s3=s3
    )
    assert done.counts == {"succeeded": 2}
    assert s3.get_object(Bucket=bucket, Key="e/a.txt")["Body"].read() != b"plain a"
    reader = s3cse.EncryptionClient(s3, keyring=_keyring(old))
    got = reader.get_object(Bucket=bucket, Key="e/a.txt")
    assert got["Body"].read() == b"plain a" and got["ContentType"] == "text/plain"
    again = batch.run(
        batch.JobSpec("encrypt", to_keys=_refs(old)), batch.from_prefix(s3, bucket, "e/"), s3=s3
    )
    assert again.counts == {"skipped": 2}
    # rewrap: a HEAD and a metadata rewrite (CopyObject), no GET of the content.
    calls = Calls(s3)
    spec = batch.JobSpec("rewrap", keys=_refs(old), to_keys=_refs(new))
    rewrapped = batch.run(spec, batch.from_prefix(s3, bucket, "e/"), s3=s3, workers=1)
    assert rewrapped.counts == {"succeeded": 2}
    assert "GetObject" not in calls.made and calls.made.count("CopyObject") == 2
    verified = batch.run(
        batch.JobSpec("verify", keys=_refs(new)), batch.from_prefix(s3, bucket, "e/"), s3=s3
    )
    assert verified.counts == {"succeeded": 2}


@pytest.mark.seaweedfs_only(
    "engine and input handling; the store-facing operations run on both stores"
)
def test_a_stopped_job_resumes_where_it_stopped_from_a_job_dir_on_s3(s3, bucket, keys):
    old, new = keys
    writer = s3cse.EncryptionClient(s3, keyring=_keyring(old))
    for i in range(30):
        writer.put_object(Bucket=bucket, Key=f"r/{i:02d}", Body=str(i).encode())
    spec = batch.JobSpec("rewrap", keys=_refs(old), to_keys=_refs(new))
    stop = threading.Event()
    seen = []

    def progress(record):
        seen.append(record)
        if len(seen) == 10:
            stop.set()  # as Ctrl-C does: what has not started does not start

    job = f"s3://{bucket}/jobs/one"
    first = batch.run(
        spec,
        batch.from_prefix(s3, bucket, "r/"),
        s3=s3,
        job_dir=job,
        workers=2,
        stop=stop,
        progress=progress,
    )
    assert 10 <= first.total < 30
    second = batch.run(spec, batch.from_prefix(s3, bucket, "r/"), s3=s3, job_dir=job, workers=4)
    assert second.total == 30 and second.already_done == first.total
    assert second.counts == {"succeeded": 30}
    reader = s3cse.EncryptionClient(s3, keyring=_keyring(new))
    assert all(
        reader.get_object(Bucket=bucket, Key=f"r/{i:02d}")["Body"].read() == str(i).encode()
        for i in range(30)
    )
    summary = json.loads(s3.get_object(Bucket=bucket, Key="jobs/one/summary.json")["Body"].read())
    assert summary["counts"] == {"succeeded": 30}


@pytest.mark.seaweedfs_only(
    "engine and input handling; the store-facing operations run on both stores"
)
def test_manifests_batch_operations_csv_and_s3_inventory_csv_gz_and_parquet(
    s3, bucket, keys, tmp_path
):
    old, _ = keys
    writer = s3cse.EncryptionClient(s3, keyring=_keyring(old))
    names = ["m/a b.txt", "m/ü+plus", "m/skip.log"]
    for name in names:
        writer.put_object(Bucket=bucket, Key=name, Body=b"x")
    import urllib.parse

    quoted = [urllib.parse.quote_plus(n, safe="/") for n in names]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("".join(f"{bucket},{q}\n" for q in quoted))
    tasks = list(batch.from_manifest(s3, str(manifest), [("exclude", "*.log")]))
    assert [t.key for t in tasks] == names[:2]
    # An inventory as S3 writes it: manifest.json, gzipped CSV data files, keys quoted.
    rows = "".join(f'"{bucket}","{q}","","true","false"\n' for q in quoted)
    s3.put_object(Bucket=bucket, Key="inv/data/1.csv.gz", Body=gzip.compress(rows.encode()))
    spec = {
        "sourceBucket": bucket,
        "destinationBucket": f"arn:aws:s3:::{bucket}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker",
        "files": [{"key": "inv/data/1.csv.gz", "size": 1, "MD5checksum": "-"}],
    }
    s3.put_object(Bucket=bucket, Key="inv/manifest.json", Body=json.dumps(spec).encode())
    found = batch.from_manifest(s3, f"s3://{bucket}/inv/manifest.json")
    assert [t.key for t in found] == names
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "bucket": [bucket] * 3,
            "key": names,  # Parquet inventories do not quote keys
            "version_id": [None] * 3,
            "is_latest": [True, True, False],
            "is_delete_marker": [False, False, False],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    s3.put_object(Bucket=bucket, Key="inv/data/1.parquet", Body=out.getvalue())
    spec.update(fileFormat="Parquet", files=[{"key": "inv/data/1.parquet"}])
    (tmp_path / "inv.json").write_text(json.dumps(spec))
    census = batch.run(
        batch.JobSpec("census"), batch.from_manifest(s3, str(tmp_path / "inv.json")), s3=s3
    )
    assert census.total == 2  # the version that is not the latest is left out
    with pytest.raises(batch.ManifestError, match="ORC"):
        spec.update(fileFormat="ORC")
        list(batch.from_inventory(json.dumps(spec).encode(), lambda k: b"", "inv.json"))


@pytest.mark.seaweedfs_only(
    "engine and input handling; the store-facing operations run on both stores"
)
def test_the_batch_command_as_a_user_drives_it(s3, bucket, keys, tmp_path):
    old, new = keys
    _v2_writer(s3, old).put_object(Bucket=bucket, Key="cli/a", Body=b"a" * 10)
    s3cse.EncryptionClient(s3, keyring=_keyring(old)).put_object(
        Bucket=bucket, Key="cli/b", Body=b"b"
    )
    census = run("batch", "census", f"s3://{bucket}/cli/", check_code=0)
    assert b"V2, AES/GCM" in census.stdout and b"census: 2 objects" in census.stdout
    dry = run("batch", "upgrade", f"s3://{bucket}/cli/", "--aes-key", old, "--dryrun", check_code=0)
    assert b"(dryrun) upgrade: 2 objects: 1 succeeded, 1 skipped" in dry.stdout
    job = str(tmp_path / "job")
    done = run(
        "batch",
        "upgrade",
        f"s3://{bucket}/cli/",
        "--aes-key",
        old,
        "--to-aes-key",
        new,
        "--job-dir",
        job,
        check_code=0,
    )
    assert b"2 succeeded" in done.stdout
    assert os.path.exists(os.path.join(job, "report.csv"))
    # Tampered content: verify reports it and exits 3.
    head = s3.head_object(Bucket=bucket, Key="cli/b")
    data = bytearray(s3.get_object(Bucket=bucket, Key="cli/b")["Body"].read())
    data[0] ^= 1
    s3.put_object(Bucket=bucket, Key="cli/b", Body=bytes(data), Metadata=head["Metadata"])
    report = tmp_path / "verify.csv"
    verify = run(
        "batch", "verify", f"s3://{bucket}/cli/", "--aes-key", new, "--report", str(report)
    )
    assert verify.returncode == 3, verify.stderr
    assert b"cli/b" in verify.stderr
    rows = {row[1]: row for row in csv.reader(report.open())}
    assert rows["cli/b"][3:5] == ["failed", "IntegrityError"] and rows["cli/a"][3] == "succeeded"
    usage = run("batch", "rewrap", f"s3://{bucket}/cli/", "--aes-key", old)
    assert usage.returncode == 2 and b"--to-kms-key-id" in usage.stderr
    # A manifest: TARGET scopes it. Rows outside the prefix are left out; a manifest
    # naming another bucket is refused before anything runs; TARGET cannot be left out.
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{bucket},cli/a\n{bucket},cli/b\n{bucket},other/c\n")
    scoped = run(
        "batch", "census", f"s3://{bucket}/cli/", "--manifest", str(manifest), check_code=0
    )
    assert b"census: 2 objects" in scoped.stdout
    manifest.write_text(f"{bucket},cli/a\nsomeone-elses-bucket,cli/a\n")
    refused = run(
        "batch",
        "upgrade",
        f"s3://{bucket}/cli/",
        "--manifest",
        str(manifest),
        "--aes-key",
        new,
        "--job-dir",
        str(tmp_path / "refused"),
    )
    assert refused.returncode == 1, refused.stderr
    assert b"someone-elses-bucket" in refused.stderr and b"split the manifest" in refused.stderr
    assert not os.path.exists(tmp_path / "refused" / "checkpoint.jsonl")  # nothing ran
    missing = run("batch", "census", "--manifest", str(manifest))
    assert missing.returncode == 2 and b"TARGET" in missing.stderr


@pytest.mark.seaweedfs_only(
    "engine and input handling; the store-facing operations run on both stores"
)
def test_the_lambda_handler_answers_both_invocation_schemas(
    s3, bucket, keys, kms_key_arn, monkeypatch
):
    old, _ = keys
    kms_writer = s3cse.EncryptionClient(
        s3, keyring=s3cse.KmsKeyring(kms_key_arn, kms_client=__import__("boto3").client("kms"))
    )
    kms_writer.put_object(Bucket=bucket, Key="l/a b.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="l/plain", Body=b"p")
    s3.put_object(Bucket=bucket, Key="l/planted", Body=b"x", Metadata={"x-amz-cek-alg": "junk"})
    tasks = [
        {"taskId": "t1", "s3Bucket": bucket, "s3Key": "l/a+b.txt", "s3VersionId": None},
        {"taskId": "t2", "s3Bucket": bucket, "s3Key": "l/plain"},
        {"taskId": "t3", "s3Bucket": bucket, "s3Key": "l/planted"},
    ]
    event = {
        "invocationSchemaVersion": "2.0",
        "invocationId": "inv-2",
        "job": {"id": "j", "userArguments": {"operation": "verify", "kmsKeyId": kms_key_arn}},
        "tasks": tasks,
    }
    answer = batch.lambda_handler(event, None)
    assert answer["invocationSchemaVersion"] == "2.0" and answer["invocationId"] == "inv-2"
    codes = {r["taskId"]: r["resultCode"] for r in answer["results"]}
    assert codes == {"t1": "Succeeded", "t2": "PermanentFailure", "t3": "PermanentFailure"}
    # Schema 1.0: no userArguments, settings from the environment, bucket by ARN.
    monkeypatch.setenv("S3CSE_BATCH_OPERATION", "encrypt")
    monkeypatch.setenv("S3CSE_TO_AES_KEY_FILE", old)
    event = {
        "invocationSchemaVersion": "1.0",
        "invocationId": "inv-1",
        "job": {"id": "j"},
        "tasks": [{"taskId": "t2", "s3Key": "l/plain", "s3BucketArn": f"arn:aws:s3:::{bucket}"}],
    }
    answer = batch.lambda_handler(event, None)
    assert answer["results"] == [
        {"taskId": "t2", "resultCode": "Succeeded", "resultString": "succeeded: encrypted in place"}
    ]
    got = s3cse.EncryptionClient(s3, keyring=_keyring(old)).get_object(Bucket=bucket, Key="l/plain")
    assert got["Body"].read() == b"p"
    # A setting that cannot work fails every task permanently, saying why.
    event["job"] = {"id": "j", "userArguments": {"operation": "shred"}}
    event["invocationSchemaVersion"] = "2.0"
    (result,) = batch.lambda_handler(event, None)["results"]
    assert result["resultCode"] == "PermanentFailure" and "shred" in result["resultString"]


@pytest.mark.slow
@pytest.mark.seaweedfs_only("one store is enough to test the engine; the operations run on both")
def test_dask_runs_a_job_across_worker_processes_and_survives_a_killed_worker(
    s3, bucket, keys, tmp_path
):
    import signal

    from distributed import Client, LocalCluster

    old, new = keys
    writer = s3cse.EncryptionClient(s3, keyring=_keyring(old))
    for i in range(60):
        writer.put_object(Bucket=bucket, Key=f"d/{i:02d}", Body=str(i).encode())
    spec = batch.JobSpec("rewrap", keys=_refs(old), to_keys=_refs(new))
    job = str(tmp_path / "job")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2  # two worker processes
        killed = threading.Event()

        def progress(record):
            if not killed.is_set():  # the first partition is back: kill one worker
                killed.set()
                os.kill(next(iter(pids.values())), signal.SIGKILL)

        try:
            first = batch.run(
                spec,
                batch.from_prefix(s3, bucket, "d/"),
                s3=s3,
                job_dir=job,
                dask=client,
                workers=2,
                progress=progress,
            )
            completed = first.total
        except Exception:  # Dask gave the partition up: the rerun finishes it
            completed = 0
        assert killed.is_set()
        again = batch.run(
            spec, batch.from_prefix(s3, bucket, "d/"), s3=s3, job_dir=job, dask=client, workers=2
        )
        # The command line on the same cluster.
        census = run(
            "batch",
            "census",
            f"s3://{bucket}/d/",
            "--dask-scheduler",
            cluster.scheduler_address,
            check_code=0,
        )
        assert b"census: 60 objects: 60 succeeded" in census.stdout
    assert again.total == 60 and again.counts == {"succeeded": 60}
    assert again.already_done >= min(completed, 1)
    reader = s3cse.EncryptionClient(s3, keyring=_keyring(new))
    for i in range(60):
        assert reader.get_object(Bucket=bucket, Key=f"d/{i:02d}")["Body"].read() == str(i).encode()


def test_review_cases_planted_files_big_metadata_one_put_and_the_job_dirs_own_files(
    s3, bucket, keys, tmp_path
):
    old, new = keys
    # Plaintext beside a planted instruction file: encrypt neither skips nor believes it.
    s3.put_object(Bucket=bucket, Key="x/secret.csv", Body=b"plain,data")
    real = _v2_writer(s3, new, instruction_file_put=True)  # a well-formed file, wrong key
    real.put_object(Bucket=bucket, Key="x/other", Body=b"o")
    planted = s3.get_object(Bucket=bucket, Key="x/other.instruction")["Body"].read()
    s3.put_object(Bucket=bucket, Key="x/secret.csv.instruction", Body=planted)
    worker = batch.JobSpec("encrypt", to_keys=_refs(old)).worker(s3)
    record = worker.run(batch.Task(bucket, "x/secret.csv"))
    assert (record.status, record.error_code) == ("failed", "Ambiguous") and not record.done
    # Too much user metadata to keep the key beside it: refused before anything is written
    # (an instruction file would be a second write, and the only copy is being replaced).
    _v2_writer(s3, old).put_object(
        Bucket=bucket, Key="x/heavy", Body=b"h", Metadata={"note": "n" * 1500}
    )
    etag = s3.head_object(Bucket=bucket, Key="x/heavy")["ETag"]
    calls = Calls(s3)
    upgrade = batch.JobSpec("upgrade", keys=_refs(old)).worker(s3)
    heavy = upgrade.run(batch.Task(bucket, "x/heavy"))
    assert heavy.status == "failed" and "shorten the user metadata" in heavy.message
    assert s3.head_object(Bucket=bucket, Key="x/heavy")["ETag"] == etag
    # A small object is one PUT, after its tag was checked: no multipart upload.
    _v2_writer(s3, old).put_object(Bucket=bucket, Key="x/small", Body=b"s" * 100)
    calls.made.clear()
    assert upgrade.run(batch.Task(bucket, "x/small")).status == "succeeded"
    assert "CreateMultipartUpload" not in calls.made and calls.made.count("PutObject") == 1
    # The job directory inside the target: its own files are never tasks.
    job = f"s3://{bucket}/x/job"
    done = batch.run(
        batch.JobSpec("encrypt", to_keys=_refs(old)),
        batch.from_prefix(s3, bucket, "x/"),
        s3=s3,
        job_dir=job,
        target=f"s3://{bucket}/x/",
    )
    assert (
        json.loads(s3.get_object(Bucket=bucket, Key="x/job/job.json")["Body"].read())["target"]
        == f"s3://{bucket}/x/"
    )
    again = batch.run(
        batch.JobSpec("encrypt", to_keys=_refs(old)),
        batch.from_prefix(s3, bucket, "x/"),
        s3=s3,
        job_dir=job,
        target=f"s3://{bucket}/x/",
    )
    assert again.total == done.total  # the job's checkpoint never became a task
    # The same directory for another job (other keys): refused, from the command line too.
    refused = run("batch", "encrypt", f"s3://{bucket}/x/", "--to-aes-key", new, "--job-dir", job)
    assert refused.returncode == 2 and b"holds another job" in refused.stderr


def test_an_inventory_row_naming_another_bucket_is_refused():
    spec = {
        "sourceBucket": "mine",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key",
        "files": [{"key": "d.csv.gz"}],
    }
    data = gzip.compress(b'"mine","a"\n"theirs","b"\n')
    with pytest.raises(batch.ManifestError, match="theirs"):
        list(batch.from_inventory(json.dumps(spec).encode(), lambda k: data, "inv"))


@pytest.mark.seaweedfs_only(
    "engine and input handling; the store-facing operations run on both stores"
)
def test_a_job_dir_at_the_bucket_root_is_never_its_own_task(s3, bucket, keys):
    old, _ = keys
    s3.put_object(Bucket=bucket, Key="plain.txt", Body=b"p")
    spec = batch.JobSpec("encrypt", to_keys=_refs(old))
    first = batch.run(spec, batch.from_prefix(s3, bucket, ""), s3=s3, job_dir=f"s3://{bucket}")
    second = batch.run(spec, batch.from_prefix(s3, bucket, ""), s3=s3, job_dir=f"s3://{bucket}/")
    assert first.total == second.total == 1 and second.already_done == 1
    assert (
        json.loads(s3.get_object(Bucket=bucket, Key="job.json")["Body"].read())["operation"]
        == "encrypt"
    )


@pytest.mark.seaweedfs_only("the terminal display is the command's, not the store's")
def test_on_a_terminal_a_job_shows_objects_rates_and_for_a_manifest_the_time_left(
    s3, bucket, keys, tmp_path
):
    import pty
    import re
    import select
    import subprocess
    import time

    from tests.integration.test_cli import S3CSE

    old, _ = keys
    writer = s3cse.EncryptionClient(s3, keyring=_keyring(old))
    for i in range(3):
        writer.put_object(Bucket=bucket, Key=f"tty/{i}", Body=b"x" * 1000)
    manifest = tmp_path / "m.csv"
    manifest.write_text("".join(f"{bucket},tty/{i}\n" for i in range(3)))
    controller, terminal = pty.openpty()  # the command's stderr is a terminal, as a user's
    command = [S3CSE, "batch", "verify", f"s3://{bucket}/tty/", "--manifest", str(manifest)]
    proc = subprocess.Popen(
        [*command, "--aes-key", old],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
    )
    os.close(terminal)  # the command holds the only other end now
    drawn = b""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # read as it draws (a full buffer stops it)
            if not select.select([controller], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command closed its end, all of it read
                break
            if not chunk:
                break
            drawn += chunk
        stdout = proc.communicate(timeout=300)[0]
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, drawn
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", drawn).decode(errors="replace")
    assert "3/3" in text and "objects/s" in text and "3.0 kB at" in text, text
    assert re.search(r"\d:\d\d:\d\d", text), text  # the time left (0:00:00 at the end)
    assert b"verify: 3 objects: 3 succeeded" in stdout
