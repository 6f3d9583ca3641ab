"""``cp``, ``mv``, ``cat`` and ``sync``: moving data in and out, encrypted."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from .. import _keyfiles as keyfiles
from .._objects import delete_object
from ..client import EncryptionClient
from ..core.metadata import (
    INSTRUCTION_FILE_SUFFIX,
    crypto_metadata_keys,
    likely_plaintext_length,
)
from ..errors import (
    WriteConflictError,
)
from . import _sync as sync_plan
from ._app import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    Context,
    Crypto,
    S3Url,
    _aws_options,
    _context,
    _crypto,
    _describe,
    _each,
    _each_counted,
    _filter_order,
    _is_instruction_file,
    _key_options,
    _key_warnings,
    _list_objects,
    _matches,
    _read_key_options,
    _run,
    main,
    parse_location,
)
from .progress import Progress, printable

# ---- cp / cat


def _transfer_options(f: Callable[..., Any], *, recursive: bool = True) -> Callable[..., Any]:
    """Options of the commands that move data (cp, mv, sync): selection, target keys,
    aws's upload arguments, --dryrun and --workers."""
    options = [
        click.option("--recursive", "-r", is_flag=True, help="A folder or an S3 prefix."),
        click.option(
            "--include",
            multiple=True,
            help="Include names matching this pattern" + (" (-r)." if recursive else "."),
        ),
        click.option(
            "--exclude",
            multiple=True,
            help="Exclude names matching this pattern" + (" (-r)." if recursive else "."),
        ),
        click.option("--to-kms-key-id", help="s3->s3: re-encrypt under this KMS key."),
        click.option(
            "--to-aes-key",
            type=click.Path(dir_okay=False),
            help="s3->s3: re-encrypt under this AES key.",
        ),
        click.option(
            "--to-rsa-public-key",
            type=click.Path(dir_okay=False),
            help="s3->s3: re-encrypt under this RSA public key.",
        ),
        click.option("--dryrun", is_flag=True, help="Print what would be done; change nothing."),
        click.option(
            "--workers",
            default=10,
            show_default=True,
            type=click.IntRange(1, 64),
            help="Files transferred at once" + (" (with --recursive)." if recursive else "."),
        ),
        click.option("--content-type", help="Content-Type of uploaded objects."),
        click.option(
            "--metadata", help='User metadata of uploaded objects: k=v,k2=v2 or JSON {"k": "v"}.'
        ),
        click.option(
            "--sse",
            type=click.Choice(["AES256", "aws:kms"]),
            help="S3 server-side encryption on top (the store then also encrypts).",
        ),
        click.option("--sse-kms-key-id", help="KMS key for --sse aws:kms."),
        click.option(
            "--sse-c",
            type=click.Choice(["AES256"]),
            help="S3 server-side encryption with your key (SSE-C), with --sse-c-key.",
        ),
        click.option(
            "--sse-c-key", help="The SSE-C key: 32 bytes, or fileb://FILE to read it from a file."
        ),
        click.option("--storage-class", help="Storage class of uploaded objects."),
        click.option("--acl", help="Canned ACL of uploaded objects."),
    ]
    if not recursive:
        options = options[1:]
    for option in reversed(options):
        f = option(f)
    return f


@dataclass
class _Transfer:
    """What one cp/mv/sync run does to each file, however many there are."""

    ctx: Context
    crypto: Crypto
    dest: EncryptionClient
    verb: str | None  # "move" for mv; else upload/download/copy by direction
    dryrun: bool
    upload_args: dict[str, Any]
    read_args: dict[str, Any]
    progress: Progress
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    config: Any = None  # TransferConfig of each file (recursive: fewer parts at once)

    def callback(self, task: Callable[[int], None]) -> Callable[[int], None]:
        """``task``, stopping the transfer (as Ctrl-C does) once the run was interrupted."""

        def report(n: int) -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt
            task(n)

        return report

    def status(self, kind: str, source: Any, target: Any = None) -> None:
        if kind != "delete":
            self.progress.file_done()
        if not self.ctx.quiet:
            prefix = "(dryrun) " if self.dryrun else ""
            tail = "" if target is None else f" to {target}"
            self.progress.log(f"{prefix}{self.verb or kind}: {source}{tail}")


@dataclass(frozen=True)
class _Item:
    """One file or object to copy to its very destination (recursive copies, sync)."""

    source: S3Url | str
    target: S3Url | str
    size: int | None = None  # plaintext size, for the progress display
    modified: float | None = None  # an object's LastModified: its downloaded file takes it
    etag: str | None = None  # the object as listed: mv deletes that version or none


def _parse_metadata_option(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    if value.lstrip().startswith("{"):
        return keyfiles.parse_json_map(value, "--metadata")
    pairs = {}
    for item in value.split(","):
        name, equals, content = item.partition("=")
        if not equals or not name.strip():
            raise click.UsageError(f"--metadata takes k=v,k2=v2 or JSON; {item!r} has no '='")
        pairs[name.strip()] = content
    return pairs


def _sse_c_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    if value.startswith("fileb://"):
        with open(value[len("fileb://") :], "rb") as f:
            return f.read()
    return value.encode()


def _aws_transfer_args(kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(upload ExtraArgs, read arguments) from aws's options."""
    upload: dict[str, Any] = {}
    metadata = _parse_metadata_option(kw.pop("metadata"))
    if metadata:
        upload["Metadata"] = metadata
    for option, name in (
        ("content_type", "ContentType"),
        ("sse", "ServerSideEncryption"),
        ("sse_kms_key_id", "SSEKMSKeyId"),
        ("storage_class", "StorageClass"),
        ("acl", "ACL"),
    ):
        value = kw.pop(option)
        if value:
            upload[name] = value
    algorithm, key = kw.pop("sse_c"), _sse_c_key(kw.pop("sse_c_key"))
    if (algorithm is None) != (key is None):
        raise click.UsageError("--sse-c and --sse-c-key go together")
    read: dict[str, Any] = {}
    if key is not None:
        if len(key) != 32:
            raise click.UsageError(f"--sse-c-key must be 32 bytes, found {len(key)}")
        read = {"SSECustomerAlgorithm": algorithm, "SSECustomerKey": key}
        upload.update(read)
    return upload, read


def _transfer_parameters(ctx: Context, kw: dict[str, Any]) -> tuple[dict[str, Any], bool, int]:
    """(the --to-* keys, --dryrun, --workers) taken out of ``kw``; the connection pool
    sized for the files and parts in flight."""
    to = {k: kw.pop(k) for k in ("to_kms_key_id", "to_aes_key", "to_rsa_public_key")}
    dryrun, workers = kw.pop("dryrun"), kw.pop("workers")
    ctx.connections = max(32, workers * max(1, _PARTS_IN_FLIGHT // workers) + workers + 8)
    kw.pop("include")
    kw.pop("exclude")
    return to, dryrun, workers


@contextlib.contextmanager
def _transfer_run(
    ctx: Context,
    kw: dict[str, Any],
    to: dict[str, Any],
    source: S3Url | str,
    target: S3Url | str,
    *,
    verb: str | None,
    dryrun: bool,
    workers: int | None,
) -> Iterator[_Transfer]:
    """The keys, clients and progress display of a cp/mv/sync run (``workers``: files at
    once, None for a single file)."""
    upload_args, read_args = _aws_transfer_args(kw)
    with _key_warnings(ctx.quiet):
        # s3->s3 with --to-* keys: the command's own keys only read the source.
        writing = isinstance(target, S3Url) and not (isinstance(source, S3Url) and any(to.values()))
        crypto = _crypto(ctx, kw, writing=writing)
        dest_client = (
            _destination_client(ctx, crypto, to)
            if isinstance(source, S3Url) and isinstance(target, S3Url)
            else crypto.client
        )
    with Progress(enabled=ctx.progress and not ctx.quiet and not dryrun) as progress:
        run = _Transfer(ctx, crypto, dest_client, verb, dryrun, upload_args, read_args, progress)
        if workers is not None:
            run.config = _per_file_config(workers)
        yield run


def _stopped_message(target: S3Url | str, verb: str, *, many: bool = False) -> str:
    """What an interrupt left behind, in the command's terms (``many``: a recursive
    copy or a sync, where what was done before stays)."""
    if many:
        under_way = (
            "stored nothing (their multipart uploads were aborted)"
            if isinstance(target, S3Url)
            else "left no partial file"
        )
        return (
            f"the {verb} was stopped: what it had done stays, the transfers under way "
            f"{under_way}; run it again to finish"
        )
    if isinstance(target, S3Url):
        return (
            f"the {verb} in progress was stopped and its multipart upload aborted; "
            "it stored nothing"
        )
    return f"the {verb} in progress was stopped; it left no partial file"


def _transfer_command(src: str, dst: str, kw: dict[str, Any], *, move: bool) -> None:
    ctx = _context(kw)
    recursive = kw.pop("recursive")
    to, dryrun, workers = _transfer_parameters(ctx, kw)
    source, target = parse_location(src), parse_location(dst)
    if move and "-" in (source, target):
        raise click.UsageError("mv moves files and objects; use cp with - (stdin/stdout)")
    if move and isinstance(source, S3Url) and isinstance(target, S3Url):
        if recursive:
            onto_itself = (source.bucket, source.key.rstrip("/")) == (
                target.bucket,
                target.key.rstrip("/"),
            )
        else:
            name = target.key
            if not name or name.endswith("/"):
                name += source.key.rsplit("/", 1)[-1]
            onto_itself = (source.bucket, source.key) == (target.bucket, name)
    else:
        onto_itself = False
    if onto_itself:
        raise click.UsageError(f"cannot move {source} onto itself")

    def action() -> None:
        filters = _filter_order()
        with _transfer_run(
            ctx,
            kw,
            to,
            source,
            target,
            verb="move" if move else None,
            dryrun=dryrun,
            workers=workers if recursive else None,
        ) as run:
            if recursive:
                _copy_recursive(run, source, target, filters, workers)
            else:
                _copy_one(run, source, target)

    verb = "move" if move else ("upload" if isinstance(target, S3Url) else "download")
    if recursive:
        verb = "move" if move else "copy"
    _run(ctx.debug, action, _stopped_message(target, verb, many=recursive))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("src")
@click.argument("dst")
@_transfer_options
@_key_options
@_aws_options
def cp(src: str, dst: str, **kw: Any) -> None:
    """Copy, encrypting on the way up and decrypting on the way down.

    SRC and DST are each a local path, - (stdin/stdout) or s3://bucket/key.
    local->s3 encrypts, s3->local decrypts, s3->s3 decrypts and re-encrypts.
    A downloaded file takes the object's modification time, as aws does.
    """
    _transfer_command(src, dst, kw, move=False)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("src")
@click.argument("dst")
@_transfer_options
@_key_options
@_aws_options
def mv(src: str, dst: str, **kw: Any) -> None:
    """Move: copy as cp does, then delete the source (a local file, or an object with its
    instruction file) once its copy is complete. An object that changed since it was
    read is not deleted. s3->s3 re-encrypts under --to-* keys."""
    _transfer_command(src, dst, kw, move=True)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("src")
@click.argument("dst")
@click.option(
    "--delete",
    is_flag=True,
    help="Delete what is at DST but not at SRC (objects with their instruction files).",
)
@click.option("--size-only", is_flag=True, help="Compare sizes only, not modification times.")
@click.option(
    "--exact-timestamps",
    is_flag=True,
    help="s3->local: download a same-sized object unless its time matches the file's "
    "exactly (by default only when the local file is newer).",
)
@functools.partial(_transfer_options, recursive=False)
@_key_options
@_aws_options
def sync(
    src: str, dst: str, delete: bool, size_only: bool, exact_timestamps: bool, **kw: Any
) -> None:
    """Make DST hold what SRC holds, as aws s3 sync does: send what is new or changed
    (encrypting on the way up, decrypting on the way down, re-encrypting s3->s3).

    SRC and DST are each a local folder or s3://bucket/prefix. A file is sent when DST
    lacks it, when the sizes differ or when the source is newer; a downloaded file takes
    the object's time. Sizes are the plaintext sizes, known from the listing without a
    key: nothing is downloaded or decrypted to compare. An object at DST that is not
    encrypted is replaced by its encrypted form. --delete refuses a SRC that holds
    nothing (a mistyped prefix would empty DST); use rm --recursive for that.
    """
    ctx = _context(kw)
    to, dryrun, workers = _transfer_parameters(ctx, kw)
    source, target = parse_location(src), parse_location(dst)
    if "-" in (source, target):
        raise click.UsageError("sync takes folders and prefixes; use cp with - (stdin/stdout)")
    if not isinstance(source, S3Url) and not isinstance(target, S3Url):
        raise click.UsageError("one of SRC and DST must be an s3:// location")
    if isinstance(source, str) and not os.path.isdir(source):
        raise click.UsageError(f"{source} is not a folder")
    if isinstance(target, str) and os.path.exists(target) and not os.path.isdir(target):
        raise click.UsageError(f"{target} is not a folder")
    if isinstance(source, S3Url) and isinstance(target, S3Url) and _overlap(source, target):
        raise click.UsageError(
            f"cannot sync {source} to {target}: one is inside the other (the sync would "
            "copy into, or delete from, its own source)"
        )
    direction: sync_plan.Direction = (
        "copy"
        if isinstance(source, S3Url) and isinstance(target, S3Url)
        else "upload"
        if isinstance(target, S3Url)
        else "download"
    )

    def action() -> None:
        order = _filter_order()
        with _transfer_run(
            ctx, kw, to, source, target, verb=None, dryrun=dryrun, workers=workers
        ) as run:
            skipped: list[str] = []
            sources = _sync_side(run, source, order, skipped)
            dests = _sync_side(run, target, order, None)
            if delete and not sources and dests:
                raise click.UsageError(
                    f"{source} holds nothing (is it mistyped?), so --delete would delete "
                    f"everything at {target}; use rm --recursive to do that"
                )
            sends, gone = sync_plan.plan(
                [entry for entry, _ in sources.values()],
                {name: entry for name, (entry, _) in dests.items()},
                direction,
                size_only=size_only,
                exact_timestamps=exact_timestamps,
                delete=delete,
            )
            sends = _settle_estimates(
                run,
                sends,
                sources,
                dests,
                direction,
                size_only=size_only,
                exact_timestamps=exact_timestamps,
            )
            items: list[_Item] = []
            for send in sends:
                entry, location = sources[send.source.name]
                if isinstance(target, S3Url):
                    dst_location: S3Url | str | None = S3Url(
                        target.bucket, _join_key(target.key, entry.name)
                    )
                else:  # never through a link, never outside the folder
                    assert isinstance(location, S3Url)
                    dst_location = _local_target(location, target, entry.name, skipped)
                if dst_location is not None:
                    items.append(
                        _Item(location, dst_location, entry.size, entry.modified, entry.etag)
                    )
            if gone and skipped and isinstance(source, str):
                # What could not be read is not gone: deleting its copies would lose
                # them (a vanished mount, an unreadable folder), so nothing is deleted.
                click.echo(
                    printable(
                        f"s3cse: warning: --delete deleted nothing: {len(skipped)} paths "
                        f"under {source} could not be read (see above)"
                    ),
                    err=True,
                )
                gone = []
            run.progress.total(sum(item.size or 0 for item in items), len(items))
            # A file in the way of a folder a send needs (file x, object x/y) goes first;
            # every other deletion after the sends.
            sent_folders = {
                "/".join(parts[:n]) + "/"
                for send in sends
                for parts in [send.source.name.split("/")]
                for n in range(1, len(parts))
            }
            first = [e for e in gone if e.name + "/" in sent_folders]
            last = [e for e in gone if e.name + "/" not in sent_folders]
            phases: list[list[_Item | _Gone]] = [
                [_Gone(dests[e.name][1], e.etag) for e in first],
                list(items),
                [_Gone(dests[e.name][1], e.etag) for e in last],
            ]
            failures, worst = 0, EXIT_FAILURE
            for phase in phases:
                failed, code = _each_counted(
                    run.stop,
                    phase,
                    functools.partial(_sync_job, run),
                    workers,
                    lambda job: str(job.source if isinstance(job, _Item) else job.location),
                )
                failures, worst = failures + failed, max(worst, code)
            if failures:
                total = sum(map(len, phases))
                raise CliError(f"{failures} of {total} changes failed", worst)
            _report_skipped(skipped)

    _run(ctx.debug, action, _stopped_message(target, "sync", many=True))


@dataclass(frozen=True)
class _Gone:
    """A file or object at a sync's destination that its source no longer has."""

    location: S3Url | str
    etag: str | None = None  # the object as listed: a newer one is not deleted


def _overlap(a: S3Url, b: S3Url) -> bool:
    """Whether one prefix holds the other (the same one included)."""
    if a.bucket != b.bucket:
        return False
    first, second = (url.key.rstrip("/") for url in (a, b))
    first, second = (p + "/" if p else "" for p in (first, second))
    return first.startswith(second) or second.startswith(first)


def _sync_side(
    run: _Transfer,
    location: S3Url | str,
    order: list[tuple[str, str]],
    skipped: list[str] | None,
) -> dict[str, tuple[sync_plan.Entry, S3Url | str]]:
    """Name -> (what sync compares, where it is) of one side of a sync; ``skipped``
    (None: this is the destination) gathers what a source walk could not read."""
    side: dict[str, tuple[sync_plan.Entry, S3Url | str]] = {}
    if isinstance(location, S3Url):
        for relative, listed in _listed_objects(run.ctx, location, order):
            stored = int(listed["Size"])
            entry = sync_plan.Entry(
                relative,
                # Under 16 bytes cannot be V2/V3 (the tag alone is 16): never "the same
                # size" as anything, so a HEAD tells what it is.
                likely_plaintext_length(stored) if stored >= 16 else -1,
                listed["LastModified"].timestamp(),
                exact=False,
                etag=listed.get("ETag"),
            )
            side[relative] = (entry, S3Url(location.bucket, listed["Key"]))
    elif os.path.isdir(location):
        files = (
            _local_files(location, skipped=skipped)
            if skipped is not None
            else _local_files(location, destination=True)
        )
        for file in files:
            if _matches(file.relative, order):
                entry = sync_plan.Entry(file.relative, file.size, file.modified)
                side[file.relative] = (entry, file.path)
    return side


def _settle_estimates(
    run: _Transfer,
    sends: list[sync_plan.Send],
    sources: dict[str, tuple[sync_plan.Entry, S3Url | str]],
    dests: dict[str, tuple[sync_plan.Entry, S3Url | str]],
    direction: sync_plan.Direction,
    *,
    size_only: bool,
    exact_timestamps: bool,
) -> list[sync_plan.Send]:
    """The sends left once objects whose listed size was only an estimate (V1 CBC,
    unencrypted, whose plaintext size the V2/V3 rule gets wrong) are HEADed for their
    real one; 16 HEADs at once. A destination object that is not encrypted is sent
    again whatever its size."""
    unsure = [send for send in sends if send.estimated]
    if not unsure:
        return sends

    def settle(send: sync_plan.Send) -> bool:
        """Still to be sent?"""
        assert send.dest is not None
        entries = []
        for entry, side in ((send.source, sources), (send.dest, dests)):
            location = side[entry.name][1]
            if not entry.exact and isinstance(location, S3Url):
                try:
                    info = _describe(run.ctx.s3, location.bucket, location.key, run.read_args)
                except Exception:  # the transfer itself reports what is wrong
                    return True
                size = info.get("plaintext_size")
                if not isinstance(size, int):
                    return True  # a V1 object that does not say its size
                if side is dests and info.get("format") == "not encrypted":
                    return True
                entry = dataclasses.replace(entry, size=size, exact=True)
            entries.append(entry)
        return (
            sync_plan.differs(
                entries[0],
                entries[1],
                direction,
                size_only=size_only,
                exact_timestamps=exact_timestamps,
            )
            is not None
        )

    pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="s3cse-head")
    try:  # an interrupt waits for the HEADs under way only
        still = dict(zip(map(id, unsure), pool.map(settle, unsure), strict=True))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [send for send in sends if still.get(id(send), True)]


def _sync_job(run: _Transfer, job: _Item | _Gone) -> None:
    if isinstance(job, _Item):
        _copy_item(run, job)
        return
    if run.stop.is_set():
        raise KeyboardInterrupt
    location = job.location
    if not run.dryrun:
        if isinstance(location, S3Url):
            _delete_if_unchanged(
                run, location, job.etag, "it changed after sync listed it (another writer?)"
            )
        else:
            os.unlink(location)
    run.status("delete", location)


def _destination_client(ctx: Context, crypto: Crypto, to: dict[str, Any]) -> EncryptionClient:
    if not any(to.values()):
        return crypto.client
    options = keyfiles.KeyOptions(
        kms_key_ids=[to["to_kms_key_id"]] if to["to_kms_key_id"] else [],
        aes_keys=[to["to_aes_key"]] if to["to_aes_key"] else [],
        rsa_public_keys=[to["to_rsa_public_key"]] if to["to_rsa_public_key"] else [],
        matdesc=json.dumps(crypto.options.material_description),
        kms_client=ctx.kms if to["to_kms_key_id"] else None,
    )
    keyring = keyfiles.build_keyrings(options)
    assert keyring is not None
    return EncryptionClient(
        ctx.s3, keyring=keyring, instruction_file_put=crypto.client.instruction_file_put
    )


def _copy_one(run: _Transfer, source: S3Url | str, target: S3Url | str) -> None:
    """Copy one file or object named on the command line: a target that is a folder or
    ends in / gets the source's name; - is stdin or stdout."""
    if run.stop.is_set():  # interrupted: start nothing more
        raise KeyboardInterrupt
    if isinstance(source, S3Url) and not source.key:
        raise click.UsageError(f"{source} names no object; add a key or use --recursive")
    if isinstance(target, S3Url):
        if not target.key or target.key.endswith("/"):
            if isinstance(source, S3Url):
                name = source.key.rsplit("/", 1)[-1]
            elif source == "-":
                raise click.UsageError("copying stdin needs a full destination key")
            else:
                name = os.path.basename(source)
            target = S3Url(target.bucket, target.key + name)
        if source == "-":
            if not run.dryrun:
                task = run.callback(run.progress.task(str(target), None))
                run.crypto.client.upload_fileobj(
                    sys.stdin.buffer,
                    target.bucket,
                    target.key,
                    ExtraArgs={**_context_args(run), **run.upload_args},
                    Callback=task,
                )
            run.status("upload", source, target)
            return
        if not isinstance(source, S3Url) and os.path.isdir(source):
            raise click.UsageError(f"{source} is a folder: add --recursive to copy it")
        _copy_item(run, _Item(source, target))
        return
    if not isinstance(source, S3Url):
        raise click.UsageError("one of SRC and DST must be an s3:// location")
    if target == "-":
        if run.dryrun:
            run.status("download", source, target)
            return
        read = {**_context_args(run), **run.read_args}
        response = run.crypto.client.get_object(Bucket=source.bucket, Key=source.key, **read)
        out = sys.stdout.buffer
        with contextlib.closing(response["Body"]) as body:
            for chunk in body.iter_chunks(1024 * 1024):
                out.write(chunk)
        out.flush()
        return
    path = target
    if os.path.isdir(path) or path.endswith(os.sep):
        path = os.path.join(path, source.key.rsplit("/", 1)[-1])
    info = _download_info(run.ctx, source, run.read_args)
    modified = info.get("last_modified")
    _copy_item(
        run,
        _Item(
            source,
            path,
            info.get("plaintext_size"),
            datetime.datetime.fromisoformat(modified).timestamp() if modified else None,
            info.get("etag"),
        ),
    )


def _context_args(run: _Transfer) -> dict[str, Any]:
    return {"EncryptionContext": run.crypto.context} if run.crypto.context else {}


def _copy_item(run: _Transfer, item: _Item) -> None:
    """Copy one file or object to exactly ``item.target`` (mv: then delete the source)."""
    if run.stop.is_set():  # interrupted: start nothing more
        raise KeyboardInterrupt
    client, progress = run.crypto.client, run.progress
    read = {**_context_args(run), **run.read_args}
    upload = {**_context_args(run), **run.upload_args}
    source, target = item.source, item.target
    if isinstance(source, S3Url) and isinstance(target, S3Url):
        if run.dryrun:
            run.status("copy", source, target)
            return
        response = client.get_object(Bucket=source.bucket, Key=source.key, **read)
        with contextlib.closing(response["Body"]) as body:
            task = run.callback(progress.task(str(target), response.get("ContentLength")))
            run.dest.upload_fileobj(
                body,
                target.bucket,
                target.key,
                ExtraArgs={**_kept_attributes(response, run.upload_args), **upload},
                Callback=task,
                Config=run.config,
            )
        if run.verb == "move":
            _delete_if_unchanged(
                run,
                source,
                response.get("ETag"),
                f"it changed after it was read (another writer?); {target} holds the version read",
            )
        run.status("copy", source, target)
        return
    if isinstance(target, S3Url):
        assert isinstance(source, str)
        size = os.path.getsize(source)  # OSError: reported per file
        if run.dryrun:
            run.status("upload", source, target)
            return
        task = run.callback(progress.task(str(target), size))
        client.upload_file(
            source, target.bucket, target.key, ExtraArgs=upload, Callback=task, Config=run.config
        )
        if run.verb == "move":
            os.unlink(source)
        run.status("upload", source, target)
        return
    assert isinstance(source, S3Url)
    path = target
    if os.path.isdir(path):
        raise click.UsageError(
            f"{source} would be written to {path}, which is a folder (another object's "
            "name makes it one); copy it on its own to another name"
        )
    if run.dryrun:
        run.status("download", source, path)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    task = run.callback(progress.task(str(source), item.size))
    client.download_file(
        source.bucket, source.key, path, ExtraArgs=read, Callback=task, Config=run.config
    )
    if item.modified is not None:  # as aws: the file takes the object's time (sync uses it)
        os.utime(path, (item.modified, item.modified))
    if run.verb == "move":
        _delete_if_unchanged(
            run,
            source,
            item.etag,
            f"it changed after it was read (another writer?); {path} holds the version read",
        )
    run.status("download", source, path)


def _delete_if_unchanged(run: _Transfer, source: S3Url, etag: str | None, why: str) -> None:
    """Delete an object (with its instruction file) only if it is still the version that
    was read or listed (``etag``): another writer's newer object stays, and ``why`` says
    so."""
    from botocore.exceptions import ClientError

    condition = {"IfMatch": etag} if etag else {}
    try:
        delete_object(
            run.ctx.s3,
            {"Bucket": source.bucket, "Key": source.key, **condition, **_access(run.read_args)},
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404", "NotFound"):
            return  # gone already (S3 answers a conditional delete of nothing so)
        if code not in ("PreconditionFailed", "412"):
            raise
        try:  # some stores answer 412 for an object that is gone
            run.ctx.s3.head_object(Bucket=source.bucket, Key=source.key, **_access(run.read_args))
        except ClientError as missing:
            if missing.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return
            raise
        raise WriteConflictError(f"{why}, so it was kept").at(source.bucket, source.key) from None


#: Parts in flight across all files of a recursive copy (each part buffers 8 MiB).
_PARTS_IN_FLIGHT = 10


def _per_file_config(workers: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(max_concurrency=max(1, _PARTS_IN_FLIGHT // workers))


def _kept_attributes(response: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """What an s3->s3 copy keeps of its source, as aws does: Content-Type and the user's
    own metadata (not the source's crypto metadata), unless the command gives them."""
    kept: dict[str, Any] = {}
    if response.get("ContentType") and "ContentType" not in given:
        kept["ContentType"] = response["ContentType"]
    user = {
        k: v
        for k, v in (response.get("Metadata") or {}).items()
        if k.lower() not in crypto_metadata_keys()
    }
    if user and "Metadata" not in given:
        kept["Metadata"] = user
    return kept


def _access(args: dict[str, Any]) -> dict[str, Any]:
    """What a DeleteObject of the source takes of the read arguments (none of SSE-C)."""
    return {k: v for k, v in args.items() if k in ("RequestPayer", "ExpectedBucketOwner")}


def _download_info(
    ctx: Context, source: S3Url, read_args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a HEAD says of the object to download (its size, time, ETag); a missing key
    that is a prefix says to add -r."""
    from botocore.exceptions import ClientError

    try:
        return _describe(ctx.s3, source.bucket, source.key, read_args)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            listed = ctx.s3.list_objects_v2(
                Bucket=source.bucket, Prefix=source.key.rstrip("/") + "/", MaxKeys=1
            )
            if listed.get("KeyCount", 0):
                raise click.UsageError(
                    f"{source} is a prefix, not an object: add --recursive to copy what is under it"
                ) from None
        raise


def _listed_objects(
    ctx: Context, url: S3Url, order: list[tuple[str, str]]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name relative to the prefix, listing entry) of the objects under ``url`` that the
    filters select: no instruction files, no folder markers."""
    prefix = url.key
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    for item in _list_objects(ctx.s3, url.bucket, prefix):
        relative = item["Key"][len(prefix) :]
        if (
            _is_instruction_file(item["Key"])
            or not relative
            or relative.endswith("/")
            or not _matches(relative, order)
        ):
            continue
        yield relative, item


def _local_target(
    source: S3Url, folder: str, relative: str, skipped: list[str] | None = None
) -> str | None:
    """Where an object lands under ``folder``; None (reported, added to ``skipped``)
    when its name would write outside it (``..``, or through a symlink)."""
    local = local_destination(folder, relative)
    if local is None:
        if skipped is not None:
            skipped.append(str(source))
        click.echo(
            printable(f"s3cse: warning: skipping {source}: its name would write outside {folder}"),
            err=True,
        )
    return local


def _copy_recursive(
    run: _Transfer,
    source: S3Url | str,
    target: S3Url | str,
    order: list[tuple[str, str]],
    workers: int,
) -> None:
    items: list[_Item] = []
    skipped: list[str] = []
    if isinstance(source, S3Url):
        for relative, listed in _listed_objects(run.ctx, source, order):
            key = S3Url(source.bucket, listed["Key"])
            if isinstance(target, S3Url):
                dst: S3Url | str | None = S3Url(target.bucket, _join_key(target.key, relative))
            else:
                dst = _local_target(key, target, relative, skipped)
            if dst is not None:
                items.append(_listed_item(key, dst, listed))
    else:
        if source == "-" or not os.path.isdir(source):
            raise click.UsageError(f"{source} is not a folder")
        if not isinstance(target, S3Url):
            raise click.UsageError("one of SRC and DST must be an s3:// location")
        for file in _local_files(source, follow=run.verb != "move", skipped=skipped):
            if _matches(file.relative, order):
                dst = S3Url(target.bucket, _join_key(target.key, file.relative))
                items.append(_Item(file.path, dst, file.size))
    run.progress.total(sum(item.size or 0 for item in items), len(items))
    _each(run.stop, items, functools.partial(_copy_item, run), workers, "files", _item_name)
    _report_skipped(skipped)


def _report_skipped(skipped: list[str]) -> None:
    """Exit 2, as aws does, when files were skipped (each was reported as it was) and
    everything else succeeded."""
    if skipped:
        raise CliError(f"{len(skipped)} skipped (see the warnings above)", EXIT_USAGE)


def _item_name(item: _Item) -> str:
    return str(item.source)


def _listed_item(source: S3Url, target: S3Url | str, listed: dict[str, Any]) -> _Item:
    return _Item(
        source,
        target,
        likely_plaintext_length(int(listed["Size"])),
        listed["LastModified"].timestamp(),
        listed.get("ETag"),
    )


@dataclass(frozen=True)
class _LocalFile:
    path: str
    relative: str  # '/'-separated, relative to the folder walked
    size: int
    modified: float


def _local_files(
    folder: str,
    *,
    follow: bool = True,
    skipped: list[str] | None = None,
    destination: bool = False,
) -> Iterator[_LocalFile]:
    """The regular files under ``folder``, following symlinks (as ``aws s3 cp`` does) but
    never into the same folder twice. What cannot be sent (a dangling link, a FIFO or
    device, a file gone or unreadable, a name S3 keeps for instruction files) is
    reported on stderr, added to ``skipped`` and left; the walk goes on.

    ``destination``: the files a sync may replace or delete: no link is followed or
    listed (whatever a link points at is never written or deleted through it), and
    nothing is reported. s3cse's own partial downloads (``.s3cse-*.part``) are never
    listed."""
    walked: dict[str, tuple[int, int]] = {}  # folder path -> its (device, inode)
    follow = follow and not destination

    def skip(path: str, why: str) -> None:
        if destination:
            return
        if skipped is not None:
            skipped.append(path)
        click.echo(printable(f"s3cse: warning: skipping {path}: {why}"), err=True)

    def walk_error(error: OSError) -> None:
        skip(str(error.filename), error.strerror or str(error))

    for root, dirs, files in os.walk(folder, followlinks=follow, onerror=walk_error):
        try:
            info = os.stat(root)
        except OSError as exc:
            skip(root, exc.strerror or str(exc))
            dirs[:] = []
            continue
        identity = (info.st_dev, info.st_ino)
        parent, ancestors = os.path.dirname(root), set()
        while parent in walked:  # the folders above this one, on this path
            ancestors.add(walked[parent])
            parent = os.path.dirname(parent)
        if identity in ancestors:  # a link back up the tree: would never end
            skip(root, "a symlink loop (it links to a folder above it)")
            dirs[:] = []
            continue
        walked[root] = identity
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if name.startswith(".s3cse-") and name.endswith(".part"):
                continue  # a download under way (or killed): never sent, never deleted
            if name.endswith(INSTRUCTION_FILE_SUFFIX):
                base = name[: -len(INSTRUCTION_FILE_SUFFIX)]
                skip(
                    path,
                    f"S3 keeps names ending in {INSTRUCTION_FILE_SUFFIX} for instruction "
                    f"files: uploaded, it would replace the data key of {base}; rename it",
                )
                continue
            if not follow and os.path.islink(path):  # mv deletes: never what a link points at
                if not destination:
                    skip(path, "a symlink (mv moves files, not what links point to)")
                continue
            try:
                info = os.stat(path)
            except OSError as exc:
                reason = "a dangling symlink" if os.path.islink(path) else exc.strerror
                skip(path, str(reason or exc))
                continue
            if not stat.S_ISREG(info.st_mode):
                skip(path, "not a regular file (a FIFO, socket or device)")
                continue
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            yield _LocalFile(path, relative, info.st_size, info.st_mtime)


def local_destination(folder: str, relative_key: str) -> str | None:
    """Where an object named ``relative_key`` lands under ``folder``, or None when its name
    (``..``, empty parts, absolute paths) would put it anywhere else."""
    parts = relative_key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    path = os.path.join(folder, *parts)
    root = os.path.realpath(folder)
    if not os.path.realpath(path).startswith(root + os.sep):
        return None
    return path


def _join_key(prefix: str, relative: str) -> str:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix + relative


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("src")
@_read_key_options
@_aws_options
def cat(src: str, **kw: Any) -> None:
    """Decrypt s3://bucket/key to standard output."""
    ctx = _context(kw)
    location = parse_location(src)
    if not isinstance(location, S3Url) or not location.key:
        raise click.UsageError("cat takes s3://bucket/key")

    def action() -> None:
        with _key_warnings(ctx.quiet):
            crypto = _crypto(ctx, kw)
        extra = {"EncryptionContext": crypto.context} if crypto.context else {}
        response = crypto.client.get_object(Bucket=location.bucket, Key=location.key, **extra)
        out = sys.stdout.buffer
        with contextlib.closing(response["Body"]) as body:
            for chunk in body.iter_chunks(1024 * 1024):
                out.write(chunk)
        out.flush()

    _run(ctx.debug, action)
