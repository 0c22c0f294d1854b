"""File request and response schemas, named by direction (In, Out, Args)."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.datastructures import FileStorage

from quantdesk.schemas import PageArgs, UTCDateTime

CATEGORY = validate.Regexp(r"^[A-Za-z_-]{1,20}$", error="A category name, e.g. data.")


class FilePart(Upload):  # type: ignore[misc]
    """A file part of a multipart form; a text field of the same name is refused."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> FileStorage:
        if not isinstance(value, FileStorage):
            raise ValidationError("Send a file: a multipart/form-data part with a file name.")
        return value


class UploadIn(Schema):
    """multipart/form-data: the file, its category and, for a price file, a data set name."""

    file = FilePart(required=True, metadata={"description": "the file's bytes"})
    category = fields.String(
        validate=CATEGORY,
        metadata={"description": "strategy, data, report, avatar or other (default)"},
    )
    dataset = fields.String(
        validate=validate.Length(min=1, max=45),
        metadata={
            "description": "data files only: make the prices the symbol user:<dataset> "
            "(a-z, 0-9, '_', '-'; columns date, open, high, low, close, volume)"
        },
    )


class DatasetOut(Schema):
    name = fields.String(required=True)
    symbol = fields.String(required=True, metadata={"example": "user:my-prices"})
    rows = fields.Integer(required=True)
    first_date = fields.Date(required=True)
    last_date = fields.Date(required=True)


class FileOut(Schema):
    id = fields.Integer(required=True)
    filename = fields.String(required=True, metadata={"description": "safe display name"})
    size = fields.Integer(required=True, metadata={"description": "bytes"})
    content_type = fields.String(required=True, metadata={"description": "from the content"})
    sha256 = fields.String(required=True, metadata={"description": "hex; the download's ETag"})
    category = fields.Function(lambda record: record.category.name, required=True)
    dataset = fields.Nested(DatasetOut, allow_none=True)
    created_at = UTCDateTime(required=True)


class FileListArgs(PageArgs):
    category = fields.String(validate=CATEGORY)


class CategoryOut(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class CategoryListOut(Schema):
    items = fields.List(fields.Nested(CategoryOut), required=True)


class UsageOut(Schema):
    files = fields.Integer(required=True)
    used_bytes = fields.Integer(required=True)
    quota_bytes = fields.Integer(required=True)
    max_file_bytes = fields.Integer(required=True)


class FileStrategyIn(Schema):
    name = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "default: the file name without .py"},
    )
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
