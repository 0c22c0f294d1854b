"""The storage backends refuse any key but a service-made UUID, so no key escapes its root."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from quantdesk.files.storage import LocalStorage, ObjectMissing, S3Storage, new_key
from tests.files.conftest import S3Server

BAD_KEYS = [
    "../escape",
    "a/b",
    "/etc/passwd",
    "",
    "ABCDEF" * 6,
    "0" * 31,
    "g" * 32,
    "0" * 32 + "\n",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_storage_refuses_keys_it_did_not_make(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "uploads")
    with pytest.raises(ValueError, match="not a storage key"):
        storage.put(key, io.BytesIO(b"x"), content_type="text/plain")
    with pytest.raises(ValueError, match="not a storage key"):
        storage.open(key)
    with pytest.raises(ValueError, match="not a storage key"):
        storage.delete(key)
    assert list(tmp_path.rglob("*")) == []


def test_local_storage_writes_whole_objects_and_deletes_them(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "uploads")
    key = new_key()
    content = bytes(range(256)) * 5000
    storage.put(key, io.BytesIO(content), content_type="application/octet-stream")
    path = storage.path_of(key)
    assert path == tmp_path / "uploads" / key[:2] / key
    assert [p.name for p in path.parent.iterdir()] == [key]  # no temporary file left over
    assert storage.exists(key)
    assert storage.open(key).read_all() == content
    storage.delete(key)
    storage.delete(key)  # already gone: no error
    assert not storage.exists(key)
    with pytest.raises(ObjectMissing):
        storage.open(key)


def test_s3_storage_against_the_local_server(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    storage = S3Storage(s3_server.client(), bucket, prefix="p/")
    key = new_key()
    with pytest.raises(ValueError, match="not a storage key"):
        storage.put("../x", io.BytesIO(b"x"), content_type="text/plain")
    storage.put(key, io.BytesIO(b"hello s3"), content_type="text/plain; charset=utf-8")
    assert storage.exists(key)
    chunks = storage.open(key)
    assert b"".join(chunks) == b"hello s3"
    chunks.close()
    storage.delete(key)
    assert not storage.exists(key)
    with pytest.raises(ObjectMissing):
        storage.open(key)
