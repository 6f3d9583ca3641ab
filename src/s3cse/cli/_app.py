"""The command line's shared parts: exit codes and errors, the options every command
takes, locations, and the ``s3cse`` group the commands register on."""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import functools
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .. import __version__
from .. import _keyfiles as keyfiles
from .._objects import read_content_metadata
from ..client import EncryptionClient
from ..core.metadata import (
    INSTRUCTION_FILE_SUFFIX,
)
from ..errors import (
    ConfigurationError,
    IntegrityError,
    KeyringError,
    NotEncryptedError,
    S3CSEError,
)
from .progress import printable

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
        return _answering(self.session.client("s3", endpoint_url=self.endpoint_url, config=config))

    @functools.cached_property
    def kms(self) -> Any:
        # None: botocore's own resolution (AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL).
        return _answering(self.session.client("kms", endpoint_url=self.kms_endpoint_url))


def _answering(client: Any) -> Any:
    """``client``, unless its endpoint is on this machine and nothing listens there: then
    the error at once (botocore would retry a refused connection for some 10 s before
    the same message; a stopped ``s3cse local`` is what it almost always means)."""
    import socket
    import urllib.parse

    from botocore.exceptions import EndpointConnectionError

    url = str(client.meta.endpoint_url)
    parts = urllib.parse.urlsplit(url)
    if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        except ConnectionRefusedError:
            raise EndpointConnectionError(endpoint_url=url) from None
        except OSError:
            pass  # anything else: let the request itself find out
    return client


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
    # Said whatever happens next: a key file others can read matters even when the
    # command then fails for another reason.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", keyfiles.KeyFileWarning)
        try:
            yield
        finally:
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


# ---------------------------------------------------------------- shared by commands


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


# ---------------------------------------------------------------- shared by commands


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
