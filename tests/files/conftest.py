"""File fixtures: a real S3-compatible server (moto's, in a subprocess) and apps that use it."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from flask import Flask

from tests.support import BIN, free_port, server_env

ACCESS_KEY = "quantdesk-test-key"  # dummies: moto accepts any credentials
SECRET_KEY = "quantdesk-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"quantdesk-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server (moto[server], a dev dependency) on a free loopback port.

    Its request log goes to a file: a pipe nobody reads would fill up and stall the server.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=server_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers: up
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log_path.read_text()}")
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def s3_app(s3_server: S3Server, make_app: Callable[..., Flask]) -> Callable[..., tuple[Flask, str]]:
    """An app whose files go to a fresh bucket of the local S3 server; returns (app, bucket)."""

    def factory(**overrides: Any) -> tuple[Flask, str]:
        settings: dict[str, Any] = {
            "FILES_STORAGE": "s3",
            "FILES_S3_ENDPOINT_URL": s3_server.endpoint,
            "FILES_S3_BUCKET": s3_server.new_bucket(),
            "FILES_S3_REGION": "us-east-1",
            "FILES_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "FILES_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "FILES_S3_ADDRESSING_STYLE": "path",
            **overrides,
        }
        return make_app(**settings), settings["FILES_S3_BUCKET"]

    return factory
