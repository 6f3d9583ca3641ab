"""The ``s3cse`` command: `aws s3 cp` that encrypts, plus keys, inspection, rotation and
the embedded local servers. A shell over EncryptionClient; no crypto here."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import fnmatch
import functools
import hashlib
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__
from .. import _keyfiles as keyfiles
from .._objects import delete_object, read_content_metadata
from ..client import EncryptionClient
from ..core.metadata import (
    INSTRUCTION_FILE_SUFFIX,
    crypto_metadata_keys,
    likely_plaintext_length,
    metadata_name_meaning,
)
from ..errors import (
    ConfigurationError,
    IntegrityError,
    KeyringError,
    NotEncryptedError,
    S3CSEError,
    WriteConflictError,
)
from ..local import LOCAL_KMS_ALIAS
from . import _sync as sync_plan
from .progress import Progress, printable

EXIT_FAILURE, EXIT_USAGE, EXIT_INTEGRITY = 1, 2, 3

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  failure (S3 or KMS error, wrong key, missing object, ...)
  2  usage error (bad option or argument)
  3  integrity failure: the object failed authentication (tampered,
     truncated, or its key commitment does not match)
  With several files (--recursive, sync), the worst: 3 if any failed
  authentication, else 1 if any failed, else 2 if any were skipped
  (each is named in a warning). 130 on Ctrl-C, 143 on SIGTERM."""


# ---------------------------------------------------------------- errors and exit codes


class CliError(click.ClickException):
    exit_code = EXIT_FAILURE

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(exc, ConfigurationError) and not isinstance(exc, KeyringError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _remedy(exc: BaseException) -> str | None:
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    if isinstance(exc, EndpointConnectionError):
        url = str(exc.kwargs.get("endpoint_url", ""))
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if host in ("127.0.0.1", "localhost", "[::1]"):
            return (
                "nothing answers at that local endpoint: start the local servers with "
                '`s3cse local start`, then `eval "$(s3cse local env)"`'
            )

    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run `s3cse local start` and `eval $(s3cse local env)`"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_DEFAULT_REGION"
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            return "the object does not exist (check the key and bucket)"
        if code in ("NoSuchBucket",):
            return "the bucket does not exist"
    return None


_STOPPED = "the command was stopped before it finished"

#: The library's words for a fix, and the command line's.
_CLI_TERMS = (
    ("build it with allow_unencrypted_reads=True", "add --allow-unencrypted"),
    ("allow_unencrypted_reads=True", "--allow-unencrypted"),
    ("enable_legacy_unauthenticated_modes=True", "--legacy-unauthenticated"),
    ("enable_legacy_unauthenticated_modes", "--legacy-unauthenticated"),
    ("enable_legacy_wrapping=True", "--legacy-wrapping"),
    ("enable_legacy_wrapping", "--legacy-wrapping"),
    ("commitment_policy=", "--commitment-policy "),
    ("(a MultiKeyring holds several)", "(pass one key option per key)"),
    ("configure a keyring for that key", "give that key"),
    ("the RsaKeyring given", "the RSA key given"),
    ("the AesKeyring given", "the AES key given"),
    ("the KmsKeyring given", "the KMS key given"),
)


def in_cli_terms(message: str) -> str:
    """A library message with its fixes named as command-line options."""
    for library, cli in _CLI_TERMS:
        message = message.replace(library, cli)
    return message


def _run(debug: bool, action: Callable[[], None], stopped: str = _STOPPED) -> None:
    """Run a command body; turn failures into one or two plain lines and an exit code.
    ``stopped`` says, in the command's terms, what an interrupt left behind."""
    from botocore.exceptions import BotoCoreError, ClientError

    terminated: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        # Ctrl-C, or SIGTERM as sent by timeout, systemd, Kubernetes: clean up (abort the
        # multipart upload, remove the partial download), then exit 130 / 143. Further
        # signals are ignored, so they cannot cut that cleanup short.
        if signum == signal.SIGTERM:
            terminated.append(signum)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread (embedded use)
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            action()
        finally:  # the caller's handlers again (the CLI run in-process, as tests do)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        click.echo(
            "s3cse: " + ("terminated" if terminated else "interrupted") + f": {stopped}",
            err=True,
        )
        sys.exit(128 + signal.SIGTERM if terminated else 130)
    except BrokenPipeError:
        # The reader went away (`s3cse cat ... | head`): stop quietly, as Unix tools do.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    except (S3CSEError, ClientError, BotoCoreError, OSError) as exc:
        if debug:
            raise
        click.echo(f"s3cse: error: {printable(in_cli_terms(str(exc)))}", err=True)
        remedy = _remedy(exc)
        if remedy:
            click.echo(f"s3cse: {remedy}", err=True)
        sys.exit(_exit_code(exc))


# ---------------------------------------------------------------- shared options


@dataclass
class Context:
    debug: bool
    quiet: bool
    verbose: bool
    progress: bool
    profile: str | None
    region: str | None
    endpoint_url: str | None
    kms_endpoint_url: str | None
    connections: int = 32

    @functools.cached_property
    def session(self) -> Any:
        import boto3

        return boto3.Session(profile_name=self.profile, region_name=self.region)

    def _path_style(self) -> bool:
        return bool(
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    @functools.cached_property
    def s3(self) -> Any:
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"} if self._path_style() else {},
            # aws's defaults for the CLI, unless the environment sets them, as aws reads it
            retries={  # type: ignore[arg-type]
                "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5),
                "mode": os.environ.get("AWS_RETRY_MODE") or "standard",
            },
            max_pool_connections=self.connections,
        )
        return self.session.client("s3", endpoint_url=self.endpoint_url, config=config)

    @functools.cached_property
    def kms(self) -> Any:
        # None: botocore's own resolution (AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL).
        return self.session.client("kms", endpoint_url=self.kms_endpoint_url)


def _key_file_option(name: str, help: str) -> Callable[..., Any]:
    """A repeatable key-file option, collected as a tuple named like it (``--aes-key``:
    ``aes_keys``)."""
    return click.option(
        name,
        name[2:].replace("-", "_") + "s",
        multiple=True,
        type=click.Path(dir_okay=False),
        help=help,
    )


#: Key options only a command that encrypts takes.
_ENCRYPT_ONLY = ("--rsa-public-key", "--instruction-file")


def _read_key_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The key options of a command that only decrypts (cat)."""
    return _key_options(f, writing=False)


def _key_options(f: Callable[..., Any], writing: bool = True) -> Callable[..., Any]:
    options = [
        click.option(
            "--kms-key-id",
            "kms_key_ids",
            multiple=True,
            help="KMS key id, ARN or alias (repeatable). Of all key options, the first one "
            "given encrypts; the others also read. With no key option, S3CSE_KMS_KEY_ID is used.",
        ),
        _key_file_option(
            "--aes-key",
            "AES key file: 32 raw bytes as `s3cse keygen aes` writes, or base64 (repeatable).",
        ),
        _key_file_option("--rsa-private-key", "RSA private key PEM/DER file (repeatable)."),
        _key_file_option(
            "--rsa-public-key", "RSA public key PEM/DER file: encrypt only (repeatable)."
        ),
        click.option(
            "--kms-discovery",
            is_flag=True,
            help="Read objects wrapped under any KMS key you may use (never implied; decrypt only).",
        ),
        click.option(
            "--kms-discovery-account",
            "kms_discovery_accounts",
            multiple=True,
            help="With discovery: accept only KMS keys of this AWS account (repeatable; implies --kms-discovery).",
        ),
        click.option(
            "--kms-discovery-key-arn",
            "kms_discovery_key_arns",
            multiple=True,
            help="With discovery: accept only this KMS key ARN (repeatable; implies --kms-discovery).",
        ),
        click.option("--matdesc", help="Material description for AES/RSA keys, as JSON."),
        click.option(
            "--context", "context", help="KMS encryption context for this object, as JSON."
        ),
        click.option(
            "--instruction-file",
            is_flag=True,
            help="Store the crypto metadata in <key>.instruction.",
        ),
        click.option(
            "--commitment-policy",
            default="REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
            show_default=True,
            type=click.Choice(
                [
                    "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
                    "REQUIRE_ENCRYPT_ALLOW_DECRYPT",
                    "FORBID_ENCRYPT_ALLOW_DECRYPT",
                ],
                case_sensitive=True,  # shown and default in one case
            ),
            help="Which formats may be written (V3 unless FORBID_...) and read (V3 only unless ..._ALLOW_...).",
        ),
        click.option(
            "--legacy-wrapping",
            is_flag=True,
            help="Allow reading legacy key wraps (V1, AESWrap, kms, RSA-OAEP-SHA256).",
        ),
        click.option(
            "--legacy-unauthenticated",
            is_flag=True,
            help="Allow unauthenticated legacy content (AES-CBC) and ranged reads.",
        ),
        click.option(
            "--allow-unencrypted",
            is_flag=True,
            help="Read objects that are not client-side encrypted as they are (else refused).",
        ),
    ]
    for option in reversed(options):
        declared = option(lambda: None).__click_params__[0]  # type: ignore[attr-defined]
        if not writing and set(declared.opts) & set(_ENCRYPT_ONLY):
            continue
        f = option(f)
    return f


def _aws_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--profile", envvar="AWS_PROFILE", help="AWS profile."),
        click.option("--region", help="AWS region."),
        click.option(
            "--endpoint-url",
            help="S3 endpoint (AWS_ENDPOINT_URL_S3 works too). S3 only: KMS has its own.",
        ),
        click.option(
            "--kms-endpoint-url",
            help="KMS endpoint (AWS_ENDPOINT_URL_KMS works too).",
        ),
        click.option(
            "--quiet", "-q", "--only-show-errors", is_flag=True, help="Print nothing but errors."
        ),
        click.option(
            "--verbose", "-v", is_flag=True, help="Also say which key encrypts (on stderr)."
        ),
        click.option("--no-progress", is_flag=True, help="No progress bars."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _context(kw: dict[str, Any]) -> Context:
    return Context(
        debug=kw.pop("debug"),
        quiet=kw.pop("quiet"),
        verbose=kw.pop("verbose"),
        progress=not kw.pop("no_progress"),
        profile=kw.pop("profile"),
        region=kw.pop("region"),
        endpoint_url=kw.pop("endpoint_url"),
        kms_endpoint_url=kw.pop("kms_endpoint_url"),
    )


@dataclass
class Crypto:
    client: EncryptionClient
    context: dict[str, str]
    options: keyfiles.KeyOptions


_KEY_OPTIONS_HELP = (
    "--kms-key-id, --aes-key, --rsa-private-key or --rsa-public-key (one option per key), "
    "or to read objects under any KMS key you may use, --kms-discovery (limit it to your "
    "own keys with --kms-discovery-account ACCOUNT_ID)"
)


_KEY_FLAGS = {
    "--kms-key-id": "kms",
    "--aes-key": "aes",
    "--rsa-private-key": "rsa-private",
    "--rsa-public-key": "rsa-public",
}


def _key_order() -> list[tuple[str, str]]:
    """(kind, value) of the key options in the order given on the command line."""
    order = []
    args = click.get_current_context().meta.get("s3cse.raw_args", [])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        flag, equals, value = arg.partition("=")
        if flag in _KEY_FLAGS:
            if equals:
                order.append((_KEY_FLAGS[flag], value))
            elif i + 1 < len(args):
                order.append((_KEY_FLAGS[flag], args[i + 1]))
    return order


def _crypto(ctx: Context, kw: dict[str, Any], *, writing: bool = False) -> Crypto:
    kms_key_ids = list(kw.pop("kms_key_ids"))
    from_environment = False
    given = kms_key_ids or kw["aes_keys"] or kw["rsa_private_keys"] or kw.get("rsa_public_keys")
    if not given and os.environ.get("S3CSE_KMS_KEY_ID"):
        # The environment is a default: a key option on the command line replaces it.
        kms_key_ids, from_environment = [os.environ["S3CSE_KMS_KEY_ID"]], True
    options = keyfiles.KeyOptions(
        order=_key_order(),
        kms_key_ids=kms_key_ids,
        aes_keys=kw.pop("aes_keys"),
        rsa_private_keys=kw.pop("rsa_private_keys"),
        rsa_public_keys=kw.pop("rsa_public_keys", ()),
        matdesc=kw.pop("matdesc"),
        kms_discovery=kw.pop("kms_discovery"),
        kms_discovery_accounts=kw.pop("kms_discovery_accounts"),
        kms_discovery_key_arns=kw.pop("kms_discovery_key_arns"),
    )
    if options.uses_kms:
        options.kms_client = ctx.kms
    if writing and not (
        options.kms_key_ids
        or options.aes_keys
        or options.rsa_private_keys
        or options.rsa_public_keys
    ):
        raise click.UsageError(
            "give the key to encrypt with: --kms-key-id, --aes-key, --rsa-private-key or "
            "--rsa-public-key (--kms-discovery only reads)"
        )
    keyring = keyfiles.build_keyrings(options)
    if keyring is None:
        raise click.UsageError(f"give a key: {_KEY_OPTIONS_HELP}")
    if writing and ctx.verbose:
        source = " (from S3CSE_KMS_KEY_ID)" if from_environment else ""
        click.echo(f"s3cse: encrypting with {options.describe_encrypting_key()}{source}", err=True)
    client = EncryptionClient(
        ctx.s3,
        keyring=keyring,
        commitment_policy=kw.pop("commitment_policy"),
        enable_legacy_wrapping=kw.pop("legacy_wrapping"),
        enable_legacy_unauthenticated_modes=kw.pop("legacy_unauthenticated"),
        instruction_file_put=kw.pop("instruction_file", False),
        allow_unencrypted_reads=kw.pop("allow_unencrypted"),
    )
    return Crypto(client, keyfiles.parse_json_map(kw.pop("context"), "--context"), options)


@contextlib.contextmanager
def _key_warnings(quiet: bool) -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", keyfiles.KeyFileWarning)
        yield
    for w in caught:
        if issubclass(w.category, keyfiles.KeyFileWarning):
            click.echo(printable(f"s3cse: warning: {w.message}"), err=True)


# ---------------------------------------------------------------- locations


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_location(value: str) -> S3Url | str:
    """``s3://bucket/key`` -> S3Url; ``-`` and local paths stay strings."""
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        if not bucket:
            raise click.BadParameter(f"{value!r} names no bucket")
        return S3Url(bucket, key)
    return value


def _matches(name: str, order: list[tuple[str, str]]) -> bool:
    """aws s3 semantics: everything is included, then filters apply in order, last wins."""
    included = True
    for kind, pattern in order:
        if fnmatch.fnmatchcase(name, pattern):
            included = kind == "include"
    return included


class _RecordingCommand(click.Command):
    """Keeps the raw arguments, so key options and --include/--exclude apply in the
    order given."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["s3cse.raw_args"] = list(args)
        return super().parse_args(ctx, args)


def _filter_order() -> list[tuple[str, str]]:
    """Include/exclude patterns in the order they were given on the command line."""
    order = []
    args = click.get_current_context().meta.get("s3cse.raw_args", [])
    for i, arg in enumerate(args):
        for kind in ("include", "exclude"):
            if arg == f"--{kind}" and i + 1 < len(args):
                order.append((kind, args[i + 1]))
            elif arg.startswith(f"--{kind}="):
                order.append((kind, arg.split("=", 1)[1]))
    return order


def _list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _is_instruction_file(key: str) -> bool:
    return key.endswith(INSTRUCTION_FILE_SUFFIX)


# ---------------------------------------------------------------- the command group


class _Group(click.Group):
    """Every command keeps its raw arguments (key and filter options apply in order)."""

    command_class = _RecordingCommand
    group_class = type  # subgroups are _Group too


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP
)
@click.version_option(__version__, prog_name="s3cse")
def main() -> None:
    """Client-side encryption for Amazon S3 (AWS S3 Encryption Client format).

    Objects are encrypted before upload and decrypted after download; the store
    sees only ciphertext. Run `s3cse demo` for a tour on local servers.
    """
    logging.basicConfig(level=logging.WARNING, format="s3cse: %(message)s")


# ---- keygen


@main.group(epilog=EXIT_CODES_HELP)
def keygen() -> None:
    """Make master keys."""


@keygen.command("aes", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(dir_okay=False))
def keygen_aes(file: str) -> None:
    """Write a new 256-bit AES key (32 random bytes) to FILE, mode 0600."""
    if os.path.exists(file):
        raise click.UsageError(f"{file} exists; refusing to overwrite a key")
    keyfiles.write_aes_key(file)
    click.echo(f"wrote AES-256 key to {file} (mode 0600)", err=True)


@keygen.command("rsa", epilog=EXIT_CODES_HELP)
@click.argument("private", type=click.Path(dir_okay=False))
@click.option(
    "--public",
    "public",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the public key.",
)
@click.option("--bits", default=3072, show_default=True, type=click.IntRange(2048, 16384))
def keygen_rsa(private: str, public: str, bits: int) -> None:
    """Write a new RSA key pair: PRIVATE (PKCS#8 PEM, mode 0600) and --public PEM."""
    for path in (private, public):
        if os.path.exists(path):
            raise click.UsageError(f"{path} exists; refusing to overwrite a key")
    keyfiles.write_rsa_key_pair(private, public, bits)
    click.echo(
        f"wrote RSA-{bits} private key to {private} (mode 0600), public key to {public}", err=True
    )


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


_T = TypeVar("_T")


def _each(
    stop: threading.Event,
    items: list[_T],
    work: Callable[[_T], None],
    workers: int,
    noun: str,
    name: Callable[[_T], str] = str,
) -> None:
    """``work`` on every item, ``workers`` at once; one item's failure is reported on
    stderr (with the item's ``name`` where the error does not say it) and the rest go
    on. Raises CliError with the count (exit 3 if any failed authentication); an
    interrupt stops what has not started."""
    failures, worst = _each_counted(stop, items, work, workers, name)
    if failures:
        raise CliError(f"{failures} of {len(items)} {noun} failed", worst)


def _each_counted(
    stop: threading.Event,
    items: list[_T],
    work: Callable[[_T], None],
    workers: int,
    name: Callable[[_T], str] = str,
) -> tuple[int, int]:
    """As :func:`_each`, returning (failures, the worst exit code) instead of raising."""
    from botocore.exceptions import BotoCoreError, ClientError

    failures, worst = 0, EXIT_FAILURE
    lock = threading.Lock()

    def one(item: _T) -> None:
        nonlocal failures, worst
        if stop.is_set():
            return
        try:
            work(item)
        except BrokenPipeError:  # `s3cse cp -r ... | head`: the reader is gone
            stop.set()
            raise
        except (
            S3CSEError,
            ClientError,
            BotoCoreError,
            OSError,
            ValueError,  # a name botocore cannot encode, among others
            click.UsageError,
        ) as exc:
            code = EXIT_FAILURE if isinstance(exc, click.UsageError) else _exit_code(exc)
            message = exc.format_message() if isinstance(exc, click.UsageError) else str(exc)
            if name(item) not in message:
                message = f"{name(item)}: {message}"
            with lock:
                failures += 1
                worst = max(worst, code if code != EXIT_USAGE else EXIT_FAILURE)
            click.echo(f"s3cse: error: {printable(in_cli_terms(message))}", err=True)

    # Items at once (each large file also sends its parts at once); an interrupt stops
    # the transfers under way through their progress callbacks, which clean up as
    # Ctrl-C does.
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="s3cse-cli")
    futures: list[concurrent.futures.Future[None]] = []
    try:
        futures += [pool.submit(one, item) for item in items]
        for future in futures:
            future.result()
    except BaseException:
        stop.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
    return failures, worst


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


# ---- ls / inspect


def _describe(
    s3: Any, bucket: str, key: str, read_args: dict[str, Any] | None = None
) -> dict[str, Any]:
    sse_c = {k: v for k, v in (read_args or {}).items() if k.startswith("SSECustomer")}
    head = s3.head_object(Bucket=bucket, Key=key, **sse_c)
    size = int(head["ContentLength"])
    info: dict[str, Any] = {"object": f"s3://{bucket}/{key}"}
    if head.get("LastModified"):
        info["last_modified"] = head["LastModified"].isoformat()
    if head.get("ETag"):
        info["etag"] = head["ETag"]
    try:
        content = read_content_metadata(s3, bucket, key, head.get("Metadata", {}))
    except NotEncryptedError:
        info.update(format="not encrypted", ciphertext_size=size, plaintext_size=size)
        return info
    info.update(content.describe(size))
    return info


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
            task = progress.job(f"rotating {location}")

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
            if manifest is not None and progress.shown:
                # A manifest says how many objects there are: counted first for the ETA
                # (a listing does not, and counting it would cost a LIST of its own).
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

            if scheduler:
                from distributed import Client

                with Client(scheduler) as dask:  # type: ignore[no-untyped-call]
                    summary = batch.run(
                        spec,
                        tasks,
                        s3=ctx.s3,
                        job_dir=job_dir,
                        workers=workers,
                        progress=seen,
                        report=report,
                        dask=dask,
                        target=recorded,
                    )
            else:
                summary = batch.run(
                    spec,
                    tasks,
                    s3=ctx.s3,
                    kms=kms,
                    job_dir=job_dir,
                    workers=workers,
                    progress=seen,
                    report=report,
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


# ---- local servers


@main.group(epilog=EXIT_CODES_HELP)
def local() -> None:
    """The embedded local default: S3 (SeaweedFS) and KMS (moto) on 127.0.0.1."""


@local.command("start")
def local_start() -> None:
    """Start the local S3 and KMS in the background (data under $S3CSE_HOME)."""
    from .. import local as servers

    try:
        srv, started = servers.start_background()
    except (RuntimeError, TimeoutError, OSError) as exc:
        click.echo(printable(f"s3cse: error: the local servers did not start: {exc}"), err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(
        ("started" if started else "already running")
        + f": S3 {srv.s3.endpoint}, KMS {srv.kms.endpoint}",
        err=True,
    )
    click.echo(
        'point s3cse, boto3 and the aws CLI at them with: eval "$(s3cse local env)"', err=True
    )


@local.command("stop")
def local_stop() -> None:
    """Stop the local servers."""
    from .. import local as servers

    click.echo("stopped" if servers.stop_background() else "not running", err=True)


@local.command("status")
def local_status() -> None:
    """Say whether the local servers run, and where. Exit 1 if they do not."""
    from .. import local as servers

    srv = servers.running_servers()
    if srv is None:
        click.echo("not running (start with: s3cse local start)")
        sys.exit(EXIT_FAILURE)
    click.echo(
        f"running: S3 {srv.s3.endpoint} (pid {srv.s3.pid}), KMS {srv.kms.endpoint} (pid {srv.kms.pid}), data in {srv.s3.directory}"
    )


@local.command("env")
def local_env() -> None:
    """Print shell exports that point s3cse, boto3 and the aws CLI at the local servers."""
    from .. import local as servers

    srv = servers.running_servers()
    if srv is None:
        click.echo(
            "s3cse: the local servers are not running; start them with: s3cse local start", err=True
        )
        sys.exit(EXIT_FAILURE)
    for name, value in srv.environment.items():
        click.echo(f"export {name}={value}")


# ---- demo


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--keep-running", is_flag=True, help="Leave the local servers running afterwards.")
@click.option("--size", default=3 * 1024 * 1024, show_default=True, help="Bytes of sample data.")
def demo(keep_running: bool, size: int) -> None:
    """The main job end to end on local servers: key, encrypt + upload, look at the
    stored ciphertext, read back + verify, rotate the key, read again."""
    from .. import local as servers

    def step(text: str) -> None:
        click.echo(click.style("==> ", fg="cyan", bold=True) + text)

    def action() -> None:
        step("starting the local S3 (SeaweedFS) and KMS (moto) on 127.0.0.1 ...")
        srv, started = servers.start_background()
        try:
            _demo_steps(srv, size, step)
        finally:
            if started and not keep_running:
                servers.stop_background()
                step("stopped the local servers (use --keep-running to keep them)")

    _run(False, action)


def _demo_steps(srv: Any, size: int, step: Callable[[str], None]) -> None:
    s3, kms = srv.s3_client(), srv.kms_client()
    bucket = "s3cse-demo"
    with contextlib.suppress(
        s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists
    ):
        s3.create_bucket(Bucket=bucket)
    try:
        with tempfile.TemporaryDirectory(prefix="s3cse-demo-") as tmp:
            _demo_in(Path(tmp), s3, kms, bucket, srv, size, step)
    finally:  # leave nothing behind in the local store
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
        step(f"removed the demo bucket s3://{bucket}")


def _demo_in(
    work: Path, s3: Any, kms: Any, bucket: str, srv: Any, size: int, step: Callable[[str], None]
) -> None:
    from ..core.keyrings import AesKeyring, KmsKeyring

    key_file = work / "master.key"
    keyfiles.write_aes_key(key_file)
    step(f"made a 256-bit AES master key: {key_file} (mode {oct(key_file.stat().st_mode & 0o777)})")
    sample = work / "patients.csv"
    with open(sample, "w") as f:
        f.write("id,name,diagnosis\n")
        i = 0
        while f.tell() < size:
            f.write(f"{i},patient-{i:07d},confidential finding #{i * 7919 % 1000003}\n")
            i += 1
        f.truncate(size)  # exactly the size asked for
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    step(f"wrote a sample file: {sample} ({sample.stat().st_size} bytes, sha256 {digest[:16]}...)")
    aes = AesKeyring(keyfiles.read_aes_key(key_file), {"kid": "demo-aes"})
    client = EncryptionClient(s3, keyring=aes)
    started = time.monotonic()
    client.upload_file(
        str(sample), bucket, "records/patients.csv", ExtraArgs={"Metadata": {"dept": "cardiology"}}
    )
    step(
        f"encrypted and uploaded it to s3://{bucket}/records/patients.csv in {time.monotonic() - started:.2f} s"
    )
    stored = s3.get_object(Bucket=bucket, Key="records/patients.csv")
    head = stored["Body"].read(48)
    stored["Body"].close()
    step("what the store holds (read with plain boto3, no key):")
    click.echo(f"      first bytes: {head.hex()}")
    click.echo(f"      readable?    {'no, ciphertext' if b'patient' not in head else 'YES (bug!)'}")
    for name, value in sorted(stored["Metadata"].items()):
        meaning = metadata_name_meaning(name) or "your own metadata, stored as given"
        click.echo(f"      x-amz-meta-{name}: {value[:60]}")
        click.echo(f"          {meaning}")
    back = client.get_object(Bucket=bucket, Key="records/patients.csv")["Body"].read()
    ok = hashlib.sha256(back).hexdigest() == digest
    step(f"read it back through s3cse: {len(back)} bytes, sha256 {'matches' if ok else 'DIFFERS'}")
    if not ok:
        raise CliError("the demo read back different bytes")
    kms_ring = KmsKeyring(srv.kms_key_id or LOCAL_KMS_ALIAS, kms_client=kms)
    etag_before = s3.head_object(Bucket=bucket, Key="records/patients.csv")["ETag"]
    client.reencrypt(bucket, "records/patients.csv", kms_ring)
    after = s3.head_object(Bucket=bucket, Key="records/patients.csv")
    unchanged = "unchanged (same ETag)" if after["ETag"] == etag_before else "CHANGED"
    step(
        f"rotated its data key to the KMS key {srv.kms_key_id} "
        f"(x-amz-w is now {after['Metadata'].get('x-amz-w')}); content {unchanged}"
    )
    reader = EncryptionClient(s3, keyring=kms_ring)
    rotated = reader.get_object(Bucket=bucket, Key="records/patients.csv")["Body"].read()
    if hashlib.sha256(rotated).hexdigest() != digest:
        raise CliError("the demo read back different bytes after rotation")
    try:
        client.get_object(Bucket=bucket, Key="records/patients.csv")
        old_key = "STILL opens it (bug!)"
    except KeyringError as exc:
        old_key = f"is refused ({type(exc).__name__})"
    step(f"read it with the KMS key: sha256 matches; the old AES key {old_key}")
    step("done: encrypted client-side, stored as ciphertext, verified, rotated.")
