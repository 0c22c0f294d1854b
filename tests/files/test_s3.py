"""The S3 storage through the HTTP API, against a real local S3-compatible server (moto)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError
from flask import Flask
from sqlalchemy.orm import Session

from quantdesk.extensions import extensions_of
from quantdesk.files.models import FileRecord
from quantdesk.files.storage import S3Storage
from tests.files import PDF, STRATEGY, csv_of, price_rows, upload, uploaded
from tests.files.conftest import S3Server
from tests.support import Api, assert_error

MiB = 1024 * 1024


def _record(app: Flask, file_id: int) -> FileRecord:
    session: Session = extensions_of(app).db.session_factory()
    try:
        record = session.get(FileRecord, file_id)
        assert record is not None
        return record
    finally:
        session.close()


def test_files_round_trip_through_s3_and_delete_removes_the_object(
    s3_app: Callable[..., tuple[Flask, str]], s3_server: S3Server
) -> None:
    app, bucket = s3_app()
    assert isinstance(extensions_of(app).storage, S3Storage)
    api = Api(app)
    user = api.logged_in()
    # 9 MB: past boto3's 8 MB multipart threshold, so the upload goes in parts.
    content = b"%PDF-1.7\n" + os.urandom(9 * MiB)
    created = uploaded(api, user, content, "annual report.pdf", category="report")
    assert created["sha256"] == hashlib.sha256(content).hexdigest()

    key = _record(app, created["id"]).storage_key
    s3 = s3_server.client()
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == content
    assert stored["ContentType"] == "application/pdf"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]

    response = api.get(f"/api/files/{created['id']}", headers=user.headers)
    assert response.status_code == 200
    assert response.get_data() == content
    assert response.headers["ETag"] == f'"{created["sha256"]}"'
    assert response.headers["Content-Disposition"] == 'attachment; filename="annual report.pdf"'

    assert api.delete(f"/api/files/{created['id']}", headers=user.headers).status_code == 204
    with pytest.raises(ClientError) as gone:
        s3.head_object(Bucket=bucket, Key=key)
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert_error(api.get(f"/api/files/{created['id']}", headers=user.headers), 404)


def test_s3_keys_take_the_prefix_and_isolation_holds(
    s3_app: Callable[..., tuple[Flask, str]], s3_server: S3Server
) -> None:
    app, bucket = s3_app(FILES_S3_PREFIX="quantdesk/uploads/")
    api = Api(app)
    owner, other = api.logged_in(), api.logged_in()
    created = uploaded(api, owner, STRATEGY, "../../s.py", category="strategy")
    assert created["filename"] == "s.py"
    key = _record(app, created["id"]).storage_key
    s3 = s3_server.client()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == [f"quantdesk/uploads/{key}"]
    assert_error(api.get(f"/api/files/{created['id']}", headers=other.headers), 404)
    assert_error(api.delete(f"/api/files/{created['id']}", headers=other.headers), 404)
    assert s3.get_object(Bucket=bucket, Key=listed[0])["Body"].read() == STRATEGY


def test_a_data_set_and_a_strategy_work_from_s3(
    s3_app: Callable[..., tuple[Flask, str]],
) -> None:
    app, _bucket = s3_app()
    api = Api(app)
    user = api.logged_in()
    rows = price_rows(30)
    created = uploaded(api, user, csv_of(rows), "p.csv", category="data", dataset="s3-set")
    assert created["dataset"]["rows"] == 30
    history = api.get(
        "/api/data/stocks/user:s3-set/history?adjust=none&start=2023-01-01", headers=user.headers
    )
    assert history.status_code == 200, history.get_json()
    assert [b["close"] for b in history.get_json()["bars"]] == [r[4] for r in rows]

    code = uploaded(api, user, STRATEGY, "hold.py", category="strategy")
    response = api.post(f"/api/files/{code['id']}/strategy", json={}, headers=user.headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["code"] == STRATEGY.decode()


def test_storage_that_fails_is_a_503_and_stores_no_row(
    s3_app: Callable[..., tuple[Flask, str]],
) -> None:
    app, _bucket = s3_app(FILES_S3_BUCKET="quantdesk-no-such-bucket")
    api = Api(app)
    user = api.logged_in()
    response = upload(api, user, PDF, "r.pdf", category="report")
    error = assert_error(response, 503, "service_unavailable")
    assert error["message"] == "File storage is unavailable; try again later."
    assert "no-such-bucket" not in response.get_data(as_text=True)
    assert api.get("/api/files", headers=user.headers).get_json()["total"] == 0
