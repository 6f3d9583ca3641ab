"""``ls``, ``inspect``, ``rm``, ``mb`` and ``rb``: looking at objects and deleting them."""

from __future__ import annotations

import concurrent.futures
import json
import sys
import threading
from typing import Any

import click

from .._objects import delete_object
from ..core.metadata import (
    INSTRUCTION_FILE_SUFFIX,
)
from ..errors import (
    S3CSEError,
)
from ._app import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    CliError,
    Context,
    S3Url,
    _aws_options,
    _context,
    _describe,
    _each,
    _filter_order,
    _is_instruction_file,
    _list_objects,
    _matches,
    _run,
    main,
    parse_location,
)
from .progress import printable

# ---- ls / inspect


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_aws_options
def inspect(url: str, as_json: bool, **kw: Any) -> None:
    """Show how s3://bucket/key is encrypted. Needs no key."""
    ctx = _context(kw)
    location = parse_location(url)
    if not isinstance(location, S3Url) or not location.key:
        raise click.UsageError("inspect takes s3://bucket/key")

    def action() -> None:
        info = _describe(ctx.s3, location.bucket, location.key)
        if as_json:
            click.echo(json.dumps(info, indent=2, sort_keys=True))
            return
        width = max(len(k) for k in info)
        for k, v in info.items():
            click.echo(
                printable(
                    f"{k.replace('_', ' '):<{width}}  {json.dumps(v) if isinstance(v, dict) else v}"
                )
            )

    _run(ctx.debug, action)


def _human(size: Any) -> str:
    """A size as aws --human-readable shows it (1.0 KiB, 3.2 MiB)."""
    if not isinstance(size, int):
        return str(size)
    value = float(size)
    for unit in ("Bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} Bytes" if unit == "Bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _mark(ctx: Context, bucket: str, item: dict[str, Any]) -> tuple[Any, str]:
    """(plaintext size, how it is encrypted) of a listed object, from its HEAD."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        info = _describe(ctx.s3, bucket, item["Key"])
    except S3CSEError as exc:
        return item["Size"], printable(f"damaged: {exc.message[:40]}")
    except ClientError as exc:  # gone since the listing, SSE-C, no permission: say so, go on
        code = exc.response.get("Error", {}).get("Code", "error")
        return item["Size"], printable(f"unreadable: {code}")[:40]
    except BotoCoreError as exc:
        return item["Size"], printable(f"unreadable: {exc}")[:40]
    size = info.get("plaintext_size")
    if size is None:  # CBC without a length field: known only on decrypt
        size = "?"
    if info.get("format") == "not encrypted":
        return size, "plain"
    key_info = (
        info.get("kms_key_id")
        if "encryption_context" in info
        else json.dumps(info.get("material_description", {}))
    )
    mark = f"{info['format']} {info['wrap_algorithm']}"
    if info["key_commitment_present"]:
        mark += " committed"
    if key_info and not str(key_info).startswith("(inside"):
        mark += f" {key_info}"
    return size, printable(mark)  # key ids and descriptions come from the object's metadata


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("url", required=False)
@click.option(
    "--recursive", "-r", is_flag=True, help="List everything under the prefix, not one level."
)
@click.option("--human-readable", is_flag=True, help="Sizes in KiB, MiB, GiB.")
@click.option("--summarize", is_flag=True, help="End with the number and total size of objects.")
@_aws_options
def ls(url: str | None, recursive: bool, human_readable: bool, summarize: bool, **kw: Any) -> None:
    """List buckets (no URL), or the objects under s3://bucket[/prefix] with their
    plaintext sizes and how each is encrypted (needs no key). As aws: names relative to
    the prefix, exit 1 when nothing is found."""
    ctx = _context(kw)
    location = parse_location(url) if url else None
    if location is not None and not isinstance(location, S3Url):
        raise click.UsageError("ls takes s3://bucket[/prefix], or nothing to list buckets")

    def action() -> None:
        if location is None:
            buckets = ctx.s3.list_buckets().get("Buckets", [])
            for b in buckets:
                created = b["CreationDate"].strftime("%Y-%m-%d %H:%M:%S")
                click.echo(f"{created} {printable(b['Name'])}")
            if not buckets:
                sys.exit(EXIT_FAILURE)
            return
        paginator = ctx.s3.get_paginator("list_objects_v2")
        args: dict[str, Any] = {"Bucket": location.bucket, "Prefix": location.key}
        if not recursive:
            args["Delimiter"] = "/"
        # Non-recursive names are relative to the prefix's folder, as aws shows them.
        base = "" if recursive else location.key[: location.key.rfind("/") + 1]
        count, total, shown = 0, 0, 0
        with concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="s3cse-ls") as pool:
            for page in paginator.paginate(**args):
                for common in page.get("CommonPrefixes", []):
                    shown += 1
                    click.echo(f"{'PRE':>32} {printable(common['Prefix'][len(base) :])}")
                items = [i for i in page.get("Contents", []) if not _is_instruction_file(i["Key"])]
                marks = pool.map(lambda i: _mark(ctx, location.bucket, i), items)
                for item, (size, mark) in zip(items, marks, strict=True):
                    shown += 1
                    count += 1
                    total += size if isinstance(size, int) else int(item["Size"])
                    modified = item["LastModified"].strftime("%Y-%m-%d %H:%M:%S")
                    shown_size = _human(size) if human_readable else size
                    name = printable(item["Key"][len(base) :])
                    click.echo(f"{modified} {shown_size:>12} {mark:<40} {name}")
        if summarize:
            click.echo(f"\nTotal Objects: {count}")
            click.echo(f"   Total Size: {_human(total) if human_readable else total}")
        if not shown:
            sys.exit(EXIT_FAILURE)

    _run(ctx.debug, action)


# ---- buckets and deletes


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("url")
@_aws_options
def mb(url: str, **kw: Any) -> None:
    """Make a bucket: s3://bucket."""
    ctx = _context(kw)
    location = parse_location(url)
    if not isinstance(location, S3Url) or location.key:
        raise click.UsageError("mb takes s3://bucket")

    def action() -> None:
        args: dict[str, Any] = {"Bucket": location.bucket}
        region = ctx.s3.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        ctx.s3.create_bucket(**args)
        if not ctx.quiet:
            click.echo(f"make_bucket: {location.bucket}")

    _run(ctx.debug, action)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.option("--force", is_flag=True, help="Delete every object in it first.")
@_aws_options
def rb(url: str, force: bool, **kw: Any) -> None:
    """Remove a bucket: s3://bucket (empty, or with --force)."""
    ctx = _context(kw)
    location = parse_location(url)
    if not isinstance(location, S3Url) or location.key:
        raise click.UsageError("rb takes s3://bucket")

    def action() -> None:
        if not force and next(_list_objects(ctx.s3, location.bucket, ""), None) is not None:
            # Checked here: not every store refuses to delete a bucket with objects in it.
            raise CliError(
                f"s3://{location.bucket} is not empty; rb --force deletes its objects first"
            )
        if force:
            for item in _list_objects(ctx.s3, location.bucket, ""):
                ctx.s3.delete_object(Bucket=location.bucket, Key=item["Key"])
                if not ctx.quiet and not _is_instruction_file(item["Key"]):
                    click.echo(printable(f"delete: s3://{location.bucket}/{item['Key']}"))
        ctx.s3.delete_bucket(Bucket=location.bucket)
        if not ctx.quiet:
            click.echo(f"remove_bucket: {location.bucket}")

    _run(ctx.debug, action)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("url")
@click.option("--recursive", "-r", is_flag=True, help="Everything under the prefix.")
@click.option("--include", multiple=True, help="Include keys matching this pattern (-r).")
@click.option("--exclude", multiple=True, help="Exclude keys matching this pattern (-r).")
@click.option("--dryrun", is_flag=True, help="Print what would be deleted; delete nothing.")
@click.option(
    "--workers",
    default=10,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Objects deleted at once (with --recursive).",
)
@_aws_options
def rm(url: str, recursive: bool, dryrun: bool, workers: int, **kw: Any) -> None:
    """Delete s3://bucket/key with its instruction file (--recursive: everything under
    the prefix, stray instruction files included). Needs no key."""
    ctx = _context(kw)
    kw.pop("include")
    kw.pop("exclude")
    location = parse_location(url)
    if not isinstance(location, S3Url) or (not location.key and not recursive):
        raise click.UsageError("rm takes s3://bucket/key (or s3://bucket[/prefix] --recursive)")
    order = _filter_order()

    def action() -> None:
        if recursive:
            prefix = location.key
            if prefix and not prefix.endswith("/"):
                prefix += "/"
            listed = [i["Key"] for i in _list_objects(ctx.s3, location.bucket, prefix)]
            present = set(listed)
            keys = [
                k
                for k in listed
                if _matches(k[len(prefix) :], order)
                and not (_is_instruction_file(k) and k[: -len(INSTRUCTION_FILE_SUFFIX)] in present)
            ]
        else:
            keys = [location.key]
        stop = threading.Event()

        def delete(key: str) -> None:
            line = printable(f"delete: s3://{location.bucket}/{key}")
            if dryrun:
                click.echo(f"(dryrun) {line}")
                return
            # Through delete_object: it takes the object's instruction file along (and a
            # name XML cannot carry is no problem for a single DELETE).
            delete_object(ctx.s3, {"Bucket": location.bucket, "Key": key})
            if not ctx.quiet:
                click.echo(line)

        if not recursive:
            delete(keys[0])
            return
        _each(stop, keys, delete, workers, "objects", lambda key: f"s3://{location.bucket}/{key}")

    _run(ctx.debug, action)
