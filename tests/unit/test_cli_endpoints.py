"""The command line fails at once, with the remedy, when nothing listens at a local
endpoint, instead of retrying a refused connection for some 10 s."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from s3cse.cli._app import _answering, _remedy


def _client(port: int):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )


def test_nothing_listening_on_a_local_port_is_an_error_before_any_request():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(EndpointConnectionError) as caught:
        _answering(_client(port))
    assert "s3cse local start" in (_remedy(caught.value) or "")


def test_a_listening_local_port_is_left_to_the_requests():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = _client(server.getsockname()[1])
        assert _answering(client) is client


def test_a_remote_endpoint_is_never_probed(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("no connection may be made")

    monkeypatch.setattr(socket, "create_connection", refuse)
    client = boto3.client(
        "s3",
        endpoint_url="https://s3.example.invalid",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    assert _answering(client) is client
