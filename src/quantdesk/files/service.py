"""File rules: upload (size, type, quota, data sets), list, read, delete, make a strategy.

Plain functions over a Session and a Storage; every query is filtered by the owner, so another
user's file is indistinguishable from a missing one (404, API.md). An upload stores the object
first and commits the row after it (a failed commit removes the object again); a delete commits
first and removes the object after (a failed removal leaves an orphan object, logged, never a
row whose bytes are gone).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from typing import Any, BinaryIO

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.errors import Invalid, NotFound, PayloadTooLarge, ServiceUnavailable
from quantdesk.files import datasets, types
from quantdesk.files.models import FileCategory, FileRecord
from quantdesk.files.storage import Chunks, ObjectMissing, Storage, new_key
from quantdesk.settings import Settings
from quantdesk.strategies.models import Strategy
from quantdesk.strategies.service import create_strategy

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_STRATEGY_CODE = 100_000  # characters, as POST /api/strategies takes (strategies.schemas)


class QuotaExceeded(PayloadTooLarge):
    """413 with its own code: the file fits the size limit but not the user's quota."""

    code = "quota_exceeded"


# ---------------------------------------------------------------- categories


def categories(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(FileCategory).order_by(FileCategory.id))
    return [
        {"name": c.name, "description": c.description, "extensions": types.extensions_of(c.name)}
        for c in rows
    ]


def _category(session: Session, name: str) -> FileCategory:
    category = session.scalar(select(FileCategory).where(FileCategory.name == name))
    if category is None:
        names = ", ".join(session.scalars(select(FileCategory.name).order_by(FileCategory.id)))
        raise Invalid("Unknown category.", details={"category": [f"One of: {names}."]})
    return category


# ---------------------------------------------------------------- upload


def upload_file(
    session: Session,
    *,
    storage: Storage,
    settings: Settings,
    user: User,
    stream: BinaryIO,
    filename: str | None,
    category: str | None = None,
    dataset: str | None = None,
) -> FileRecord:
    """Check and store one uploaded file; with `dataset`, also make it the symbol user:<name>.

    413 past FILES_MAX_UPLOAD_MB or the quota (code `quota_exceeded`), 415 for a type the
    category does not take or content that is not of the type its name says, 422 for invalid
    content (Python, rows of a data set), 409 for a data set name in use.
    """
    chosen = _category(session, (category or types.Category.OTHER).strip().lower())
    name = types.display_name(filename)
    if not name:
        raise Invalid("The file needs a name.", details={"file": ["Send a file name."]})
    body = _seekable(stream)
    size, sha256 = _measure(body, limit=settings.FILES_MAX_UPLOAD_MB * MB)
    if size == 0:
        raise Invalid("The file is empty.", details={"file": ["Empty file."]})
    file_type = types.identify(name, category=chosen.name, stream=body)
    bars: list[datasets.Bar] = []
    set_name = None
    if dataset is not None and dataset.strip():
        if chosen.name != types.Category.DATA:
            raise Invalid(
                "Only data files make data sets.",
                details={"dataset": ["Upload the price file with category=data."]},
            )
        set_name = datasets.dataset_name(dataset)
        datasets.ensure_free(session, user_id=user.id, name=set_name)
        bars = datasets.parse(body, file_type.kind, max_rows=settings.FILES_DATASET_MAX_ROWS)
    _check_quota(session, user=user, size=size, quota=settings.FILES_QUOTA_MB * MB)
    key = new_key()
    body.seek(0)
    try:
        storage.put(key, body, content_type=file_type.content_type)
    except Exception as exc:
        session.rollback()
        _remove_object(storage, key)  # a partial local file or an unfinished S3 upload
        raise _storage_down("store", exc) from None
    try:
        record = FileRecord(
            user_id=user.id,
            category_id=chosen.id,
            original_name=types.clean_original(filename),
            filename=name,
            content_type=file_type.content_type,
            size=size,
            sha256=sha256,
            storage_key=key,
        )
        session.add(record)
        session.flush()
        if set_name is not None:
            datasets.store(session, user_id=user.id, file_id=record.id, name=set_name, bars=bars)
        session.commit()
    except BaseException:
        session.rollback()
        _remove_object(storage, key)
        raise
    session.refresh(record)
    return record


def _seekable(stream: BinaryIO) -> BinaryIO:
    """The upload itself when it can seek (Werkzeug spools large parts to disk), else a copy."""
    try:
        if stream.seekable():
            stream.seek(0)
            return stream
    except (AttributeError, OSError):
        pass
    copy = tempfile.SpooledTemporaryFile(max_size=MB)  # noqa: SIM115 (returned, closed by GC)
    while chunk := stream.read(types.CHUNK):
        copy.write(chunk)
    copy.seek(0)
    return copy  # type: ignore[return-value]


def _measure(stream: BinaryIO, *, limit: int) -> tuple[int, str]:
    """Size and sha256 of the stream; 413 as soon as it passes `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(types.CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"The file is larger than {limit // MB} MB.",
                details={"file": [f"At most {limit} bytes."], "max_bytes": limit},
            )
        digest.update(chunk)
    stream.seek(0)
    return size, digest.hexdigest()


def used_bytes(session: Session, *, user_id: int) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(FileRecord.size), 0)).where(FileRecord.user_id == user_id)
    )
    return int(total or 0)


def _check_quota(session: Session, *, user: User, size: int, quota: int) -> None:
    # Lock the user's row (PostgreSQL; SQLite writes one at a time anyway) so two parallel
    # uploads cannot both fit the last free megabytes.
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    used = used_bytes(session, user_id=user.id)
    if used + size > quota:
        raise QuotaExceeded(
            f"Your files would pass your quota of {quota // MB} MB: delete some first.",
            details={
                "file": [f"{size} bytes do not fit: {max(quota - used, 0)} bytes are free."],
                "quota_bytes": quota,
                "used_bytes": used,
                "file_bytes": size,
            },
        )


def usage(session: Session, *, settings: Settings, user: User) -> dict[str, int]:
    count = session.scalar(
        select(func.count()).select_from(FileRecord).where(FileRecord.user_id == user.id)
    )
    return {
        "files": int(count or 0),
        "used_bytes": used_bytes(session, user_id=user.id),
        "quota_bytes": settings.FILES_QUOTA_MB * MB,
        "max_file_bytes": settings.FILES_MAX_UPLOAD_MB * MB,
    }


# ---------------------------------------------------------------- read, list, delete


def get_file(session: Session, *, user: User, file_id: int) -> FileRecord:
    record = session.get(FileRecord, file_id)
    if record is None or record.user_id != user.id:
        raise NotFound("No such file.")
    return record


def list_files(session: Session, *, user: User, category: str | None = None) -> Select[Any]:
    """The user's files, newest first, optionally of one category."""
    stmt = select(FileRecord).where(FileRecord.user_id == user.id)
    if category:
        stmt = stmt.join(FileCategory).where(FileCategory.name == category.strip().lower())
    return stmt.order_by(FileRecord.created_at.desc(), FileRecord.id.desc())


def open_file(storage: Storage, record: FileRecord) -> Chunks:
    """The stored bytes of a file the caller may read; 404 if storage lost them (logged), 503
    if storage cannot be reached."""
    try:
        return storage.open(record.storage_key)
    except ObjectMissing:
        log.error("file %s: object %s is missing from storage", record.id, record.storage_key)
        raise NotFound(
            "The file's content is missing from storage.", details={"file_id": record.id}
        ) from None
    except Exception as exc:
        raise _storage_down("read", exc) from None


def _storage_down(action: str, exc: Exception) -> ServiceUnavailable:
    log.error("file storage failed to %s an object: %r", action, exc)
    return ServiceUnavailable(
        "File storage is unavailable; try again later.", details={"storage": action}
    )


def delete_file(session: Session, *, storage: Storage, user: User, file_id: int) -> None:
    """Delete the row (and a data set made from it), then the stored object."""
    record = get_file(session, user=user, file_id=file_id)
    key = record.storage_key
    session.delete(record)
    session.commit()
    _remove_object(storage, key)


def _remove_object(storage: Storage, key: str) -> None:
    try:
        storage.delete(key)
    except Exception:  # the row is gone or was never stored: an orphan object, not an error
        log.exception("could not remove stored object %s", key)


# ---------------------------------------------------------------- strategies


def strategy_from_file(
    session: Session,
    *,
    storage: Storage,
    user: User,
    file_id: int,
    name: str | None = None,
    description: str | None = None,
) -> Strategy:
    """A new strategy whose code is an uploaded `.py`; 422 with the sandbox check's violations."""
    record = get_file(session, user=user, file_id=file_id)
    if record.category.name != types.Category.STRATEGY:
        raise Invalid(
            "Only a strategy file can become a strategy.",
            details={"file_id": [f"The file is in the category {record.category.name}."]},
        )
    code = open_file(storage, record).read_all().decode("utf-8-sig")
    if len(code) > MAX_STRATEGY_CODE:
        raise Invalid(
            "The file is too long for a strategy.",
            details={"code": [f"At most {MAX_STRATEGY_CODE} characters."]},
        )
    stem = record.filename.rsplit(".", 1)[0]
    return create_strategy(
        session,
        user=user,
        name=(name or stem)[:100],
        code=code,
        description=description,
        changelog=f"Created from the file {record.filename}",
    )
