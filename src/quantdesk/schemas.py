"""Schema pieces every domain shares: UTC timestamps with `Z`, page arguments and page envelopes."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

MAX_PER_PAGE = 100
# Ids are 32-bit: a bigger one in a query or body is a 422, not a database error (a 500).
ID_RANGE = validate.Range(min=1, max=2**31 - 1)


class UTCDateTime(fields.DateTime):
    """ISO 8601 in UTC with a `Z` (API.md), e.g. 2026-11-30T18:55:31Z."""

    def _serialize(self, value: dt.datetime | None, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


@cache
def page_of(item_schema: type[Schema]) -> type[Schema]:
    """The page envelope `{items, page, per_page, total}` around one item schema."""
    name = item_schema.__name__.removesuffix("Out") + "PageOut"
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "page": fields.Integer(required=True),
            "per_page": fields.Integer(required=True),
            "total": fields.Integer(required=True),
        },
        name=name,
    )


def paginate(session: Session, stmt: Select[Any], *, page: int, per_page: int) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return {"items": items, "page": page, "per_page": per_page, "total": total}
