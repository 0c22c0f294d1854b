"""Uploads and downloads through the HTTP API on both backends: bytes, names, types, limits."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.extensions import extensions_of
from quantdesk.files.models import FileRecord
from quantdesk.files.storage import LocalStorage
from tests.files import (
    HEADER,
    HTML,
    JPG,
    PDF,
    PNG,
    STRATEGY,
    csv_of,
    price_rows,
    upload,
    upload_named,
    uploaded,
    xlsx_of,
)
from tests.support import Account, Api, assert_error

MiB = 1024 * 1024


@pytest.fixture
def user(api: Api) -> Account:
    return api.logged_in()


def _storage(app: Flask) -> LocalStorage:
    storage = extensions_of(app).storage
    assert isinstance(storage, LocalStorage)
    return storage


SAMPLES = [
    ("strategy", "buy_and_hold.py", STRATEGY, "text/x-python; charset=utf-8"),
    ("data", "prices.csv", csv_of(price_rows(5)), "text/csv; charset=utf-8"),
    (
        "data",
        "prices.xlsx",
        xlsx_of(price_rows(5)),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("report", "report.html", HTML, "text/html; charset=utf-8"),
    ("report", "report.pdf", PDF, "application/pdf"),
    ("avatar", "me.png", PNG, "image/png"),
    ("avatar", "me.jpeg", JPG, "image/jpeg"),
    ("other", "notes.txt", "line one\nzwei\n三\n".encode(), "text/plain; charset=utf-8"),
]


@pytest.mark.parametrize(
    ("category", "name", "content", "content_type"), SAMPLES, ids=[s[1] for s in SAMPLES]
)
def test_each_accepted_type_round_trips_byte_for_byte(
    api: Api, user: Account, app: Flask, category: str, name: str, content: bytes, content_type: str
) -> None:
    # The part's own Content-Type is a lie on purpose: the stored one comes from the content.
    created = uploaded(api, user, content, name, category=category, part_type="text/html")
    sha = hashlib.sha256(content).hexdigest()
    assert created["filename"] == name
    assert created["size"] == len(content)
    assert created["sha256"] == sha
    assert created["content_type"] == content_type
    assert created["category"] == category
    assert created["dataset"] is None

    response = api.get(f"/api/files/{created['id']}", headers=user.headers)
    assert response.status_code == 200
    assert response.get_data() == content
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Length"] == str(len(content))
    assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response.headers["ETag"] == f'"{sha}"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_a_large_binary_file_round_trips_and_is_stored_under_a_random_key(
    api: Api, user: Account, app: Flask, db: Session
) -> None:
    content = b"\x89PNG\r\n\x1a\n" + os.urandom(5 * MiB)  # past Werkzeug's in-memory spool
    created = uploaded(api, user, content, "big picture.png", category="avatar")
    response = api.get(f"/api/files/{created['id']}", headers=user.headers)
    assert response.status_code == 200
    assert hashlib.sha256(response.get_data()).hexdigest() == hashlib.sha256(content).hexdigest()
    assert response.get_data() == content

    record = db.scalar(select(FileRecord).where(FileRecord.id == created["id"]))
    assert record is not None
    assert record.original_name == "big picture.png"
    assert len(record.storage_key) == 32
    uuid.UUID(hex=record.storage_key)  # a UUID, nothing of the file name
    path = _storage(app).path_of(record.storage_key)
    assert path.read_bytes() == content
    assert path.is_relative_to(extensions_of(app).settings.files_local_dir)


def test_if_none_match_with_the_etag_is_304(api: Api, user: Account) -> None:
    created = uploaded(api, user, PDF, "r.pdf", category="report")
    etag = f'"{created["sha256"]}"'
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = api.get(
            f"/api/files/{created['id']}", headers={**user.headers, "If-None-Match": sent}
        )
        assert response.status_code == 304, sent
        assert response.get_data() == b""
        assert response.headers["ETag"] == etag
    response = api.get(
        f"/api/files/{created['id']}", headers={**user.headers, "If-None-Match": '"stale"'}
    )
    assert response.status_code == 200
    assert response.get_data() == PDF


def test_non_ascii_names_get_an_rfc_6266_filename_star(api: Api, user: Account) -> None:
    created = uploaded(api, user, STRATEGY, "均线 策略.py", category="strategy")
    assert created["filename"] == "均线 策略.py"
    response = api.get(f"/api/files/{created['id']}", headers=user.headers)
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="__ __.py"; '
        "filename*=UTF-8''%E5%9D%87%E7%BA%BF%20%E7%AD%96%E7%95%A5.py"
    )


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../../../escape-{tag}.py", "escape-{tag}.py"),
        ("..\\..\\..\\escape-{tag}.py", "escape-{tag}.py"),
        ("/etc/cron.d/escape-{tag}.py", "escape-{tag}.py"),
        ("C:\\Windows\\escape-{tag}.py", "escape-{tag}.py"),
        ("\\\\server\\share\\..\\escape-{tag}.py", "escape-{tag}.py"),
        ("escape-{tag}.py\x00.png", "escape-{tag}.py.png"),
        ("....//....//escape-{tag}.py", "escape-{tag}.py"),
        ("%2e%2e%2fescape-{tag}.py", "%2e%2e%2fescape-{tag}.py"),
        (".hidden-{tag}.py", "hidden-{tag}.py"),
        ("evil\u202e{tag}yp.py", "evil{tag}yp.py"),
        ('a<b>c:"d"|e?*-{tag}.py', "a_b_c__d__e__-{tag}.py"),
    ],
)
def test_path_traversal_names_are_only_display_names(
    api: Api, user: Account, app: Flask, db: Session, sent: str, shown: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    root = extensions_of(app).settings.files_local_dir
    before = set(root.parent.parent.rglob(f"*{tag}*")) if root.exists() else set()
    response = upload_named(api, user, STRATEGY, sent.format(tag=tag), category="strategy")
    if shown.endswith(".png"):  # the NUL trick: the name's real type is .png, not .py
        assert_error(response, 415)
        return
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["filename"] == shown.format(tag=tag)
    record = db.get(FileRecord, created["id"])
    assert record is not None
    assert tag not in record.storage_key
    stored = _storage(app).path_of(record.storage_key)
    assert stored.resolve().is_relative_to(root.resolve())
    assert stored.read_bytes() == STRATEGY
    # Nothing anywhere near the uploads folder carries the name.
    assert set(root.parent.parent.rglob(f"*{tag}*")) == before
    assert not Path(f"/etc/cron.d/escape-{tag}.py").exists()
    response = api.get(f"/api/files/{created['id']}", headers=user.headers)
    assert response.get_data() == STRATEGY


@pytest.mark.parametrize("name", ["..", "../", "   ", "\x00\x01", "\u202e", "/.../"])
def test_a_name_that_sanitises_to_nothing_is_refused(api: Api, user: Account, name: str) -> None:
    response = upload_named(api, user, STRATEGY, name, category="strategy")
    error = assert_error(response, 422, "validation_error")
    assert "file" in error["details"]


@pytest.mark.parametrize(
    ("category", "name", "content", "reason"),
    [
        ("strategy", "prices.csv", b"a,b\n", "takes .py"),
        ("avatar", "me.py", STRATEGY, "takes .png, .jpg, .jpeg"),
        ("other", "setup.exe", b"MZ\x90\x00", "takes .py"),
        ("other", "README", b"hello", "takes .py"),
        ("data", "archive.tar.gz", b"\x1f\x8b\x08", "takes .csv, .xlsx"),
        ("avatar", "me.png", b"<svg onload=alert(1)>", "first bytes"),
        ("avatar", "me.jpg", PNG, "first bytes"),
        ("report", "report.pdf", HTML, "first bytes"),
        ("report", "report.html", b"\xff\xfe<\x00h\x00t\x00", "not UTF-8"),
        ("data", "prices.csv", b"date,open\n2024-01-02,\xc3\x28\n", "not UTF-8 text (byte 21)"),
        ("strategy", "s.py", b"x = 1\x00\n", "NUL"),
        ("data", "prices.xlsx", b"PK\x03\x04" + os.urandom(200), "no readable zip"),
    ],
)
def test_types_are_checked_by_name_and_by_content_415(
    api: Api, user: Account, category: str, name: str, content: bytes, reason: str
) -> None:
    response = upload(api, user, content, name, category=category, part_type="image/png")
    error = assert_error(response, 415, "unsupported_media_type")
    assert reason in " ".join(error["details"]["file"]) + error["message"]
    assert api.get("/api/files", headers=user.headers).get_json()["total"] == 0


def test_a_zip_that_is_not_a_workbook_is_no_xlsx(api: Api, user: Account) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.txt", "not a workbook")
    response = upload(api, user, archive.getvalue(), "prices.xlsx", category="data")
    error = assert_error(response, 415)
    assert "no Excel workbook" in error["message"]


def test_a_python_file_must_parse_422_with_the_line(api: Api, user: Account) -> None:
    code = b"PARAMS = {}\n\ndef handle_bar(ctx, data)\n    pass\n"
    error = assert_error(upload(api, user, code, "broken.py", category="strategy"), 422)
    assert error["details"]["file"][0].startswith("line 3")


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"category": "secret"}, "category"),
        ({"category": "data", "dataset": "Bad Name!"}, "dataset"),
        ({"category": "report", "dataset": "fine"}, "dataset"),
    ],
)
def test_bad_form_fields_are_422(api: Api, user: Account, form: dict[str, str], field: str) -> None:
    content, name = (csv_of(price_rows(3)), "p.csv") if form.get("dataset") else (PDF, "r.pdf")
    if form.get("category") == "report":
        content, name = PDF, "r.pdf"
    error = assert_error(upload(api, user, content, name, **form), 422, "validation_error")
    assert field in error["details"]


def test_an_empty_file_a_nameless_file_and_a_missing_file_are_422(api: Api, user: Account) -> None:
    assert "file" in assert_error(upload(api, user, b"", "empty.txt"), 422)["details"]
    assert "file" in assert_error(upload(api, user, PNG, ""), 422)["details"]
    response = api.post(
        "/api/files/upload",
        data={"file": "text, not a file part"},
        headers=user.headers,
        content_type="multipart/form-data",
    )
    assert "file" in assert_error(response, 422)["details"]
    response = api.post(
        "/api/files/upload",
        data={"category": "other"},
        headers=user.headers,
        content_type="multipart/form-data",
    )
    assert "file" in assert_error(response, 422)["details"]


def test_uploads_need_a_token(api: Api) -> None:
    response = api.post(
        "/api/files/upload",
        data={"file": (io.BytesIO(PNG), "a.png")},
        content_type="multipart/form-data",
    )
    assert_error(response, 401)
    assert_error(api.get("/api/files"), 401)
    assert_error(api.get("/api/files/1"), 401)


def test_a_file_over_16_mb_is_413_by_default(api: Api, user: Account, app: Flask) -> None:
    assert extensions_of(app).settings.FILES_MAX_UPLOAD_MB == 16
    just_over = PNG + b"\x00" * (16 * MiB + 1 - len(PNG))
    error = assert_error(upload(api, user, just_over, "big.png", category="avatar"), 413)
    assert error["code"] == "payload_too_large"
    assert error["details"]["max_bytes"] == 16 * MiB
    far_over = PNG + b"\x00" * (17 * MiB)  # refused before the form is even parsed
    assert_error(upload(api, user, far_over, "bigger.png", category="avatar"), 413)
    assert api.get("/api/files", headers=user.headers).get_json()["total"] == 0


def test_the_upload_limit_is_exact(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(FILES_MAX_UPLOAD_MB=1))
    user = api.logged_in()
    exactly = PNG + b"\x01" * (MiB - len(PNG))
    created = uploaded(api, user, exactly, "exactly.png", category="avatar")
    assert created["size"] == MiB
    error = assert_error(upload(api, user, exactly + b"\x01", "over.png", category="avatar"), 413)
    assert "larger than 1 MB" in error["message"]
    assert error["details"]["max_bytes"] == MiB


def test_the_upload_limit_is_its_own_setting(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(FILES_MAX_UPLOAD_MB=3, MAX_CONTENT_MB=1))
    user = api.logged_in()
    two_mb = PNG + b"\x02" * (2 * MiB)
    assert uploaded(api, user, two_mb, "two.png", category="avatar")["size"] == len(two_mb)
    # Other endpoints keep MAX_CONTENT_MB.
    response = api.post(
        "/api/strategies", json={"name": "x", "code": "#" * (2 * MiB)}, headers=user.headers
    )
    assert_error(response, 413, "payload_too_large")


def test_the_quota_refuses_with_413_quota_exceeded(make_app: Callable[..., Flask]) -> None:
    app = make_app(FILES_QUOTA_MB=1)
    api = Api(app)
    user = api.logged_in()
    part = PNG + b"\x03" * (600 * 1024)
    first = uploaded(api, user, part, "one.png", category="avatar")
    error = assert_error(upload(api, user, part, "two.png", category="avatar"), 413)
    assert error["code"] == "quota_exceeded"
    assert "quota of 1 MB" in error["message"]
    assert error["details"]["used_bytes"] == len(part)
    assert error["details"]["quota_bytes"] == MiB
    assert error["details"]["file_bytes"] == len(part)
    usage = api.get("/api/files/usage", headers=user.headers).get_json()
    assert usage == {
        "files": 1,
        "used_bytes": len(part),
        "quota_bytes": MiB,
        "max_file_bytes": 16 * MiB,
    }
    # Another user has a quota of their own; deleting frees the space.
    other = api.logged_in()
    uploaded(api, other, part, "theirs.png", category="avatar")
    assert api.delete(f"/api/files/{first['id']}", headers=user.headers).status_code == 204
    uploaded(api, user, part, "two.png", category="avatar")


def test_another_users_file_is_404_everywhere(api: Api, user: Account, app: Flask) -> None:
    mine = uploaded(api, user, STRATEGY, "mine.py", category="strategy")
    other = api.logged_in()
    path = f"/api/files/{mine['id']}"
    assert_error(api.get(path, headers=other.headers), 404, "not_found")
    assert_error(api.delete(path, headers=other.headers), 404, "not_found")
    assert_error(api.post(f"{path}/strategy", json={}, headers=other.headers), 404)
    assert api.get("/api/files", headers=other.headers).get_json()["total"] == 0
    # Still there for its owner, bytes and all.
    assert api.get(path, headers=user.headers).get_data() == STRATEGY
    assert_error(api.get("/api/files/999999", headers=user.headers), 404)


def test_delete_removes_the_row_and_the_stored_object(
    api: Api, user: Account, app: Flask, db: Session
) -> None:
    created = uploaded(api, user, PDF, "r.pdf", category="report")
    record = db.get(FileRecord, created["id"])
    assert record is not None
    path = _storage(app).path_of(record.storage_key)
    assert path.read_bytes() == PDF
    response = api.delete(f"/api/files/{created['id']}", headers=user.headers)
    assert response.status_code == 204
    assert not path.exists()
    assert_error(api.get(f"/api/files/{created['id']}", headers=user.headers), 404)
    assert_error(api.delete(f"/api/files/{created['id']}", headers=user.headers), 404)
    db.expire_all()
    assert db.get(FileRecord, created["id"]) is None


def test_a_failed_commit_leaves_no_object_behind(
    api: Api, user: Account, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = extensions_of(app).settings.files_local_dir
    before = set(root.rglob("*")) if root.exists() else set()

    from quantdesk.files import service

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(service.datasets, "store", broken)
    response = upload(api, user, csv_of(price_rows(5)), "p.csv", category="data", dataset="lost")
    assert_error(response, 500, "internal_error")
    after = {p for p in root.rglob("*") if p.is_file()}
    assert after == {p for p in before if p.is_file()}


def test_list_filters_by_category_and_pages(api: Api, user: Account) -> None:
    uploaded(api, user, PDF, "a.pdf", category="report")
    uploaded(api, user, HTML, "b.html", category="report")
    uploaded(api, user, PNG, "c.png", category="avatar")
    uploaded(api, user, PNG, "d.png")  # no category: other
    everything = api.get("/api/files", headers=user.headers).get_json()
    assert everything["total"] == 4
    assert [f["filename"] for f in everything["items"]] == ["d.png", "c.png", "b.html", "a.pdf"]
    assert everything["items"][0]["category"] == "other"
    reports = api.get("/api/files?category=report&per_page=1", headers=user.headers).get_json()
    assert reports["total"] == 2
    assert reports["per_page"] == 1
    assert [f["filename"] for f in reports["items"]] == ["b.html"]
    page2 = api.get("/api/files?category=report&per_page=1&page=2", headers=user.headers)
    assert [f["filename"] for f in page2.get_json()["items"]] == ["a.pdf"]


def test_categories_are_seeded_with_their_extensions(api: Api, user: Account) -> None:
    items = api.get("/api/files/categories", headers=user.headers).get_json()["items"]
    assert {c["name"]: c["extensions"] for c in items} == {
        "strategy": [".py"],
        "data": [".csv", ".xlsx"],
        "report": [".html", ".htm", ".pdf"],
        "avatar": [".png", ".jpg", ".jpeg"],
        "other": [
            ".py", ".csv", ".xlsx", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".txt",
            ".json",
        ],
    }  # fmt: skip


def test_the_upload_is_documented_as_multipart(api: Api) -> None:
    doc = api.get("/api/openapi.json").get_json()
    upload_op = doc["paths"]["/api/files/upload"]["post"]
    schema = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = schema["$ref"].rsplit("/", 1)[-1]
    properties = doc["components"]["schemas"][ref]["properties"]
    assert properties["file"] == {
        "type": "string",
        "format": "binary",
        "description": "the file's bytes",
    }
    assert {"category", "dataset"} <= set(properties)
    assert {"201", "413", "415", "422"} <= set(upload_op["responses"])
    assert {"get", "delete"} <= set(doc["paths"]["/api/files/{file_id}"])
    assert "post" in doc["paths"]["/api/files/{file_id}/strategy"]


def test_data_files_without_a_dataset_name_are_just_files(api: Api, user: Account) -> None:
    content = csv_of(price_rows(3), header=[*HEADER, "note"])
    created = uploaded(api, user, content, "p.csv", category="data")
    assert created["dataset"] is None
    assert api.get(f"/api/files/{created['id']}", headers=user.headers).get_data() == content


def test_bytes_lost_from_storage_are_a_404_not_a_500(
    api: Api, user: Account, app: Flask, db: Session
) -> None:
    created = uploaded(api, user, PDF, "r.pdf", category="report")
    record = db.get(FileRecord, created["id"])
    assert record is not None
    _storage(app).path_of(record.storage_key).unlink()
    error = assert_error(api.get(f"/api/files/{created['id']}", headers=user.headers), 404)
    assert error["message"] == "The file's content is missing from storage."
    # The row can still be deleted, so the user can clean up.
    assert api.delete(f"/api/files/{created['id']}", headers=user.headers).status_code == 204
