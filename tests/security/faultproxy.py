"""A small fault-injecting HTTP proxy for loopback tests.

It sits between botocore and SeaweedFS, forwards bytes, and for requests that match a
rule (method + path/query substring) injects one fault: a connection reset mid-upload,
a reset or a truncation mid-download, a stalled response, or a 500/503 reply. Each
rule fires a bounded number of times; everything else passes through unchanged.
It listens on 127.0.0.1 only and every loop in it is bounded by the sockets closing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
import time


@dataclasses.dataclass
class Rule:
    method: str  # "PUT", "GET", ... or "*"
    contains: str  # substring of the request target, e.g. "partNumber=" or "" for any
    action: str  # "reset", "reset_response", "truncate", "stall", "500", "503"
    times: int = 1  # how often it fires
    after: int = 0  # response bytes forwarded before reset/truncate/stall
    seconds: float = 3.0  # stall length
    fired: int = 0

    def matches(self, method: str, target: str) -> bool:
        return (
            (self.method in ("*", method)) and self.contains in target and self.fired < self.times
        )


class FaultProxy:
    def __init__(self, upstream: str):
        host_port = upstream.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.partition(":")
        self.upstream = (host, int(port))
        self.rules: list[Rule] = []
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def add(self, *rules: Rule) -> None:
        with self._lock:
            self.rules.extend(rules)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pick(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target):
                    rule.fired += 1
                    self.log.append(f"{rule.action} {method} {target}")
                    return rule
        return None

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        state = {"rule": None, "sent": 0}
        pump = threading.Thread(
            target=self._pump_responses, args=(server, client, state), daemon=True
        )
        pump.start()
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = ([*lines[0].split(" "), "", ""])[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                rule = self._pick(method, target)
                if rule is not None and rule.action in ("500", "503"):
                    reason = "Slow Down" if rule.action == "503" else "Internal Error"
                    code = "SlowDown" if rule.action == "503" else "InternalError"
                    body = f'<?xml version="1.0"?><Error><Code>{code}</Code><Message>injected</Message></Error>'.encode()
                    client.sendall(
                        f"HTTP/1.1 {rule.action} {reason}\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )
                    time.sleep(0.05)
                    self._reset(client, server)
                    return
                if rule is not None and rule.action == "reset":
                    # forward half of the body, then reset both sides: a connection cut
                    # mid-upload (a request without a body never reaches the server)
                    if length:
                        server.sendall(
                            head + b"\r\n\r\n" + rest[: max(0, min(len(rest), length) // 2)]
                        )
                    self._reset(client, server)
                    return
                state["rule"], state["sent"] = rule, 0
                server.sendall(head + b"\r\n\r\n")
                body_part, buffer = rest[:length], rest[length:]
                if body_part:
                    server.sendall(body_part)
                remaining = length - len(body_part)
                while remaining > 0:
                    chunk = client.recv(min(65536, remaining))
                    if not chunk:
                        return
                    server.sendall(chunk)
                    remaining -= len(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()
            with contextlib.suppress(OSError):
                server.close()

    def _pump_responses(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while True:
                chunk = server.recv(65536)
                if not chunk:
                    break
                rule = state["rule"]
                if rule is not None and rule.action in ("reset_response", "truncate", "stall"):
                    room = rule.after - state["sent"]
                    if len(chunk) > room:
                        if room > 0:
                            client.sendall(chunk[:room])
                        if rule.action == "stall":
                            time.sleep(rule.seconds)
                            state["rule"] = None
                            client.sendall(chunk[max(room, 0) :])
                            state["sent"] += len(chunk)
                            continue
                        if rule.action == "reset_response":
                            self._reset(client, server)
                        else:  # truncate: a clean close in the middle of the body
                            with contextlib.suppress(OSError):
                                client.shutdown(socket.SHUT_RDWR)
                            client.close()
                            server.close()
                        return
                state["sent"] += len(chunk)
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()
