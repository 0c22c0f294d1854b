"""Where uploaded bytes live, behind one interface: a local folder or an S3-compatible bucket.

Keys are random hex UUIDs made by the service (never a user's file name); both backends refuse
any other key, so no key can name a path outside the folder or a prefix outside the bucket.
Objects are written whole or not at all (a temporary file renamed into place; one S3 upload)
and read back as a stream of chunks.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from quantdesk.settings import FileStorage, Settings

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_KEY = re.compile(r"[0-9a-f]{32}")


class ObjectMissing(Exception):
    """The stored object of a key is not there."""


def new_key() -> str:
    return uuid.uuid4().hex


def _checked(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class Chunks:
    """An opened object: iterate for its bytes; close releases the file or connection.

    WSGI servers call `close()` on a response body, so a download that a client abandons
    still closes its file or connection.
    """

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], Any]) -> None:
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._close()

    def read_all(self) -> bytes:
        try:
            return b"".join(self._chunks)
        finally:
            self.close()


class Storage(Protocol):
    """What the files service needs from a place to keep bytes."""

    kind: str

    def put(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        """Store `source` (read from its current position to the end) under `key`."""

    def open(self, key: str) -> Chunks:
        """The object's bytes; ObjectMissing when it is not there."""

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""

    def exists(self, key: str) -> bool: ...


class LocalStorage:
    """Files under one folder, fanned out by the key's first two characters."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        key = _checked(key)
        return self.root / key[:2] / key

    def put(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{key}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("xb") as out:
                shutil.copyfileobj(source, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def open(self, key: str) -> Chunks:
        try:
            handle = self.path_of(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        return Chunks(iter(lambda: handle.read(CHUNK), b""), handle.close)

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()


class S3Storage:
    """Objects in one bucket of AWS S3 or an S3-compatible server (MinIO, Ceph, moto)."""

    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{_checked(key)}"

    def put(self, key: str, source: BinaryIO, *, content_type: str) -> None:
        # upload_fileobj streams (multipart above 8 MB), never the whole file in memory.
        self.client.upload_fileobj(
            source, self.bucket, self.object_key(key), ExtraArgs={"ContentType": content_type}
        )

    def open(self, key: str) -> Chunks:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _status(exc) == 404:
                raise ObjectMissing(key) from None
            raise
        body = answer["Body"]
        return Chunks(body.iter_chunks(CHUNK), body.close)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise
        return True


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def build_storage(settings: Settings) -> Storage:
    """The storage FILES_STORAGE names; an S3 client is made here, it connects on first use."""
    if settings.FILES_STORAGE is FileStorage.S3:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.FILES_S3_ENDPOINT_URL or None,
            region_name=settings.FILES_S3_REGION or None,
            aws_access_key_id=settings.FILES_S3_ACCESS_KEY_ID or None,
            aws_secret_access_key=settings.FILES_S3_SECRET_ACCESS_KEY or None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.FILES_S3_ADDRESSING_STYLE},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        return S3Storage(client, settings.FILES_S3_BUCKET.strip(), settings.FILES_S3_PREFIX)
    return LocalStorage(settings.files_local_dir)
