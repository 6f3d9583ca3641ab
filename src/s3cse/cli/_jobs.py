"""``rotate`` and ``batch``: jobs over many objects, on the batch layer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import click

from .. import _keyfiles as keyfiles
from ..errors import (
    ConfigurationError,
)
from ._app import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_INTEGRITY,
    CliError,
    S3Url,
    _aws_options,
    _context,
    _crypto,
    _filter_order,
    _key_options,
    _key_warnings,
    _run,
    in_cli_terms,
    main,
    parse_location,
)
from .progress import Progress, printable

# ---- rotate


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.option("--to-kms-key-id", help="Re-wrap data keys under this KMS key.")
@click.option(
    "--to-aes-key",
    type=click.Path(dir_okay=False),
    help="Re-wrap data keys under this AES key file.",
)
@click.option(
    "--to-rsa-public-key",
    type=click.Path(dir_okay=False),
    help="Re-wrap data keys under this RSA public key.",
)
@click.option(
    "--to-rsa-private-key",
    type=click.Path(dir_okay=False),
    help="Re-wrap data keys under this RSA key pair.",
)
@click.option("--to-matdesc", help="Material description for the new AES/RSA key, as JSON.")
@click.option("--to-context", help="New KMS encryption context, as JSON.")
@click.option(
    "--workers",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Objects rotated at once.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Read and authenticate each object's content first; a damaged one is not rotated.",
)
@click.option("--dryrun", is_flag=True, help="Print what would be re-encrypted; change nothing.")
@_key_options
@_aws_options
def rotate(url: str, workers: int, verify: bool, dryrun: bool, **kw: Any) -> None:
    """Re-encrypt the data keys of every object under s3://bucket/prefix with a new
    master key. The content is not touched; resumable (already-rotated objects are
    skipped)."""
    ctx = _context(kw)
    location = parse_location(url)
    if not isinstance(location, S3Url):
        raise click.UsageError("rotate takes s3://bucket[/prefix]")
    to = {k: kw.pop(k) for k in list(kw) if k.startswith("to_")}

    def action() -> None:
        with _key_warnings(ctx.quiet):
            crypto = _crypto(ctx, kw)
            new_options = keyfiles.KeyOptions(
                kms_key_ids=[to["to_kms_key_id"]] if to["to_kms_key_id"] else [],
                aes_keys=[to["to_aes_key"]] if to["to_aes_key"] else [],
                rsa_private_keys=[to["to_rsa_private_key"]] if to["to_rsa_private_key"] else [],
                rsa_public_keys=[to["to_rsa_public_key"]] if to["to_rsa_public_key"] else [],
                matdesc=to["to_matdesc"],
                kms_client=ctx.kms if to["to_kms_key_id"] else None,
            )
            new_keyring = keyfiles.build_keyrings(new_options)
        if new_keyring is None:
            raise click.UsageError(
                "give the new key: --to-kms-key-id, --to-aes-key, --to-rsa-public-key or --to-rsa-private-key"
            )
        new_context = keyfiles.parse_json_map(to["to_context"], "--to-context") or crypto.context
        with Progress(
            enabled=ctx.progress and not ctx.quiet and not dryrun, objects=True
        ) as progress:
            task = progress.job(f"rotating {location}", sizes=False)

            def rotated(key: str, status: str) -> None:
                task(0)
                if dryrun and status == "rotated" and not ctx.quiet:
                    progress.log(printable(f"(dryrun) rotate: s3://{location.bucket}/{key}"))

            summary = crypto.client.reencrypt_prefix(
                location.bucket,
                location.key,
                new_keyring,
                max_workers=workers,
                progress=rotated,
                EncryptionContext=crypto.context or None,
                NewEncryptionContext=new_context or None,
                verify=verify,
                dryrun=dryrun,
            )
        for key, message in summary.conflicts:
            click.echo(
                printable(f"s3cse: conflict: s3://{location.bucket}/{key}: {message}"), err=True
            )
        for key, message in summary.failed:
            click.echo(
                printable(f"s3cse: error: s3://{location.bucket}/{key}: {message}"), err=True
            )
        if not ctx.quiet:
            line = str(summary)
            if dryrun:
                line = "(dryrun) " + line.replace(" re-encrypted,", " would be re-encrypted,", 1)
            click.echo(line)
        if summary.failed or summary.conflicts:
            raise CliError(
                f"{len(summary.failed)} objects could not be rotated, "
                f"{len(summary.conflicts)} changed meanwhile (run again for those)"
            )

    _run(ctx.debug, action)


# ---- batch


def _batch_command(operation: str) -> Callable[..., Any]:
    """``s3cse batch OPERATION``: one of the batch layer's jobs over a prefix or a
    manifest (see s3cse.batch)."""
    helps = {
        "census": "Count what is there, by format, wrap, key and metadata location "
        "(HEAD only; needs no key).",
        "rewrap": "Re-wrap each data key under the new key (--to-*); the content is not "
        "moved, so the cost does not depend on the object's size.",
        "upgrade": "Re-encrypt V1/V2 objects as V3 (under the --to-* key if given), "
        "streamed, the old content authenticated before the object is replaced.",
        "encrypt": "Encrypt objects that are not encrypted, in place, under the --to-* "
        "key (or the first key given).",
        "verify": "Authenticate every object's content end to end; report what fails.",
    }

    def command(target: str | None, **kw: Any) -> None:
        _batch(operation, target, kw)

    command.__doc__ = helps[operation] + (
        "\n\n    TARGET is s3://bucket[/prefix]: every object under it, or with --manifest "
        "(an S3 Inventory manifest.json, or a Batch Operations CSV of "
        "bucket,key[,version_id]) the manifest's objects under it; a manifest naming "
        "another bucket is refused. "
        "Objects are rewritten only on the condition that they are unchanged "
        "(IfMatch); a lost race is reported as a conflict."
    )
    options = [
        click.argument("target", required=False),
        click.option(
            "--manifest",
            help="S3 Inventory manifest.json or Batch Operations CSV (local path or s3://).",
        ),
        click.option("--include", multiple=True, help="Include keys matching this pattern."),
        click.option("--exclude", multiple=True, help="Exclude keys matching this pattern."),
        click.option(
            "--job-dir",
            help="Folder or s3://bucket/prefix for checkpoints and the "
            "report: a rerun skips what is done and retries what failed.",
        ),
        click.option(
            "--report",
            type=click.Path(dir_okay=False),
            help="Also write the report CSV (Batch Operations form) here.",
        ),
        click.option("--dryrun", is_flag=True, help="Plan and count; write nothing."),
        click.option(
            "--workers",
            default=8,
            show_default=True,
            type=click.IntRange(1, 256),
            help="Objects at once.",
        ),
        click.option(
            "--dask-scheduler",
            help="Run on this Dask cluster (tcp://host:8786 or tls://...): its workers get "
            "keys by reference (key ids, key-file paths), never key bytes.",
        ),
        click.option(
            "--max-kms-rps",
            type=click.FloatRange(min=0.1),
            help="At most this many KMS requests a second (botocore also backs off on throttling).",
        ),
        click.option(
            "--kms-key-id", "kms_key_ids", multiple=True, help="KMS key that reads (repeatable)."
        ),
        click.option(
            "--aes-key",
            "aes_keys",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="AES key file that reads (repeatable).",
        ),
        click.option(
            "--rsa-private-key",
            "rsa_private_keys",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="RSA private key that reads (repeatable).",
        ),
        click.option("--to-kms-key-id", help="The new KMS key."),
        click.option("--to-aes-key", type=click.Path(dir_okay=False), help="The new AES key file."),
        click.option(
            "--to-rsa-public-key",
            type=click.Path(dir_okay=False),
            help="The new RSA public key file.",
        ),
        click.option("--matdesc", help="Material description of the AES/RSA keys, as JSON."),
        click.option("--to-matdesc", help="Material description for the new key, as JSON."),
        click.option(
            "--context", "context", help="KMS encryption context of the objects, as JSON."
        ),
        click.option("--to-context", help="New KMS encryption context, as JSON."),
        click.option(
            "--verify", is_flag=True, help="rewrap: authenticate each object's content first."
        ),
        click.option(
            "--legacy-wrapping",
            is_flag=True,
            help="Read legacy key wraps (V1, AESWrap, kms, RSA-OAEP-SHA256).",
        ),
        click.option(
            "--legacy-unauthenticated",
            is_flag=True,
            help="Read unauthenticated legacy content (V1 AES-CBC): upgrade can "
            "then not authenticate it before replacing it.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    command = _aws_options(command)
    return batch_group.command(operation, epilog=EXIT_CODES_HELP)(command)


@main.group("batch", epilog=EXIT_CODES_HELP)
def batch_group() -> None:
    """Jobs over many objects: census, rewrap, upgrade, encrypt, verify; resumable with
    --job-dir."""


def _batch(operation: str, target: str | None, kw: dict[str, Any]) -> None:
    from .. import batch

    ctx = _context(kw)
    kw.pop("include")
    kw.pop("exclude")
    order = _filter_order()
    location = parse_location(target) if target else None
    manifest = kw.pop("manifest")
    if location is None:
        raise click.UsageError(
            "give TARGET, s3://bucket[/prefix]: the objects to work on (with --manifest, "
            "the bucket and prefix the manifest's objects must be in)"
        )
    if not isinstance(location, S3Url):
        raise click.UsageError("TARGET is s3://bucket[/prefix]")

    def refs(kms: Any, aes: Any, rsa_private: Any, rsa_public: Any, matdesc: Any) -> Any:
        return batch.KeyRefs(
            kms_key_ids=tuple(kms),
            aes_key_files=tuple(aes),
            rsa_private_key_files=tuple(rsa_private),
            rsa_public_key_files=tuple(rsa_public),
            material_description=keyfiles.parse_json_map(matdesc, "--matdesc") or None,
        )

    to = kw.pop("to_kms_key_id"), kw.pop("to_aes_key"), kw.pop("to_rsa_public_key")
    to_matdesc = kw.pop("to_matdesc")
    keys = refs(
        kw.pop("kms_key_ids"), kw.pop("aes_keys"), kw.pop("rsa_private_keys"), (), kw.pop("matdesc")
    )
    to_keys = refs(
        [to[0]] if to[0] else [],
        [to[1]] if to[1] else [],
        (),
        [to[2]] if to[2] else [],
        to_matdesc or (dict(keys.material_description) if keys.material_description else None),
    )
    dryrun, workers = kw.pop("dryrun"), kw.pop("workers")
    job_dir, report = kw.pop("job_dir"), kw.pop("report")
    scheduler = kw.pop("dask_scheduler")
    try:
        spec = batch.JobSpec(
            operation,  # type: ignore[arg-type]
            keys=keys,
            to_keys=to_keys,
            encryption_context=keyfiles.parse_json_map(kw.pop("context"), "--context") or None,
            new_encryption_context=keyfiles.parse_json_map(kw.pop("to_context"), "--to-context")
            or None,
            legacy_wrapping=kw.pop("legacy_wrapping"),
            legacy_unauthenticated=kw.pop("legacy_unauthenticated"),
            verify=kw.pop("verify"),
            dryrun=dryrun,
            max_kms_rps=kw.pop("max_kms_rps"),
            # Dask workers build their own clients: the same endpoints and region.
            s3_endpoint_url=ctx.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3"),
            kms_endpoint_url=ctx.kms_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS"),
            region=ctx.region,
        )
    except ConfigurationError as exc:
        message = (
            str(exc)
            .replace("(to_keys)", "(--to-kms-key-id, --to-aes-key or --to-rsa-public-key)")
            .replace("(keys)", "(--kms-key-id, --aes-key or --rsa-private-key)")
        )
        raise click.UsageError(message) from None

    def action() -> None:
        kms = ctx.kms if (spec.keys.kms_key_ids or spec.to_keys.kms_key_ids) else None
        with _key_warnings(ctx.quiet):
            spec.worker(ctx.s3, kms)  # the keys load (or fail) before any listing
        within = (location.bucket, location.key)
        recorded = f"{target} --manifest {manifest}" if manifest else target
        if manifest is None:
            tasks: Any = batch.from_prefix(ctx.s3, location.bucket, location.key, order)
        else:
            tasks = batch.from_manifest(ctx.s3, manifest, order, within)
        shown = 0
        with Progress(enabled=ctx.progress and not ctx.quiet, objects=True) as progress:
            total = None
            if (
                progress.shown
                and manifest is not None
                and not manifest.endswith(".json")
                and (manifest.startswith("s3://") or os.path.isfile(manifest))
            ):
                # A CSV manifest says how many objects there are: counted first for the
                # ETA. Not an inventory (its data files would be read twice), a pipe (it
                # reads once) or a listing (counting would cost a LIST of its own).
                total = sum(1 for _ in batch.from_manifest(ctx.s3, manifest, order, within))
            count = progress.job(f"{operation} {manifest or target}", total)

            def seen(record: Any) -> None:
                nonlocal shown
                count(record.bytes)
                if not record.done and shown < 20:
                    shown += 1
                    click.echo(
                        printable(
                            f"s3cse: {record.status}: s3://{record.bucket}/{record.key}: "
                            + in_cli_terms(record.message)
                        ),
                        err=True,
                    )

            with _dask_client(scheduler) as dask:
                summary = batch.run(
                    spec,
                    tasks,
                    s3=ctx.s3,
                    kms=kms,
                    job_dir=job_dir,
                    workers=workers,
                    progress=seen,
                    passed=lambda _task: count(0),
                    report=report,
                    dask=dask,
                    target=recorded,
                )
        if summary.failed > shown:
            click.echo(
                f"s3cse: ... {summary.failed - shown} more; the report lists them all", err=True
            )
        if not ctx.quiet:
            if operation == "census":
                for group, found in sorted(summary.census.items()):
                    click.echo(
                        printable(
                            f"{found['objects']:>10} objects {found['bytes']:>16,} bytes  {group}"
                        )
                    )
            click.echo(str(summary))
        if summary.failed:
            integrity = summary.error_codes.get("IntegrityError", 0)
            raise CliError(
                f"{summary.failed} of {summary.total} objects did not succeed"
                + (f" (see {job_dir}/report.csv)" if job_dir else ""),
                EXIT_INTEGRITY if integrity else EXIT_FAILURE,
            )

    _run(
        ctx.debug,
        action,
        "the job was stopped; what it finished is in its checkpoint "
        "(--job-dir): run it again to go on",
    )


for _operation in ("census", "rewrap", "upgrade", "encrypt", "verify"):
    _batch_command(_operation)


@contextlib.contextmanager
def _dask_client(scheduler: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at ``scheduler`` (None: no Dask)."""
    if not scheduler:
        yield None
        return
    from distributed import Client

    with Client(scheduler) as dask:  # type: ignore[no-untyped-call]
        yield dask
