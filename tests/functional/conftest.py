"""Fixtures of the functional tier: a real boto3 S3 client under botocore's Stubber, and
an in-memory S3 stand-in. Nothing here opens a socket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.httpsession
import pytest
from botocore.stub import Stubber

import s3cse

from .helpers import keyring
from .memory_s3 import MemoryS3


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the environment (an endpoint URL, checksum modes, profiles) would
    change which requests botocore builds; these tests describe the defaults."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(autouse=True)
def _no_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that escaped the stubs fails the test instead of leaving the machine."""

    def refuse(self: Any, request: Any) -> Any:
        raise AssertionError(f"a functional test sent an HTTP request: {request.url}")

    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", refuse)


@pytest.fixture
def boto_s3() -> Any:
    return boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.fixture
def stubber(boto_s3: Any) -> Iterator[Stubber]:
    """Stubber on ``boto_s3``; at the end, every response queued must have been used."""
    with Stubber(boto_s3) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def stubbed(boto_s3: Any, stubber: Stubber) -> s3cse.EncryptionClient:
    return s3cse.EncryptionClient(boto_s3, keyring())


@pytest.fixture
def memory() -> MemoryS3:
    return MemoryS3()


@pytest.fixture
def client(memory: MemoryS3) -> s3cse.EncryptionClient:
    return s3cse.EncryptionClient(memory, keyring())
