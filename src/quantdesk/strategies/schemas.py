"""Strategy request and response schemas, named by direction."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from quantdesk.schemas import PageArgs, UTCDateTime
from quantdesk.strategies.models import StrategyStatus
from quantdesk.strategies.service import SORTS

MAX_CODE = 100_000
NAME = validate.Length(min=1, max=100)
CATEGORY = validate.Length(min=1, max=50)
RISK = validate.OneOf(["low", "medium", "high"])
CODE = validate.Length(min=1, max=MAX_CODE)


class StrategyOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    code = fields.String(required=True)
    language = fields.String(required=True)
    api = fields.String(required=True, metadata={"description": "event or vectorized"})
    status = fields.String(required=True, metadata={"description": "stopped, running or error"})
    category = fields.String(allow_none=True)
    risk_level = fields.String(allow_none=True)
    params = fields.Dict(required=True)
    version = fields.Integer(required=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


class StrategySummaryOut(StrategyOut):
    class Meta:
        exclude = ("code",)


class StrategyCreateIn(Schema):
    """Give `code`, or a `template` slug from GET /api/strategies/templates."""

    name = fields.String(required=True, validate=NAME)
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    code = fields.String(validate=CODE)
    template = fields.String(validate=validate.Length(min=1, max=50))
    language = fields.String(load_default="python", validate=validate.OneOf(["python"]))
    category = fields.String(allow_none=True, validate=CATEGORY)
    risk_level = fields.String(allow_none=True, validate=RISK)
    params = fields.Dict(keys=fields.String(validate=validate.Length(max=100)))
    changelog = fields.String(validate=validate.Length(max=1000))

    @validates_schema
    def _code_or_template(self, data: dict[str, Any], **_: Any) -> None:
        if "code" not in data and "template" not in data:
            raise ValidationError("Give the strategy's code or a template.", "code")


class StrategyUpdateIn(Schema):
    name = fields.String(validate=NAME)
    description = fields.String(allow_none=True, validate=validate.Length(max=5000))
    code = fields.String(validate=CODE)
    category = fields.String(allow_none=True, validate=CATEGORY)
    risk_level = fields.String(allow_none=True, validate=RISK)
    params = fields.Dict(keys=fields.String(validate=validate.Length(max=100)))
    changelog = fields.String(validate=validate.Length(max=1000))


class StrategyCopyIn(Schema):
    name = fields.String(validate=NAME)


class StrategyListArgs(PageArgs):
    q = fields.String(validate=validate.Length(max=100))
    category = fields.String(validate=CATEGORY)
    status = fields.String(validate=validate.OneOf([s.value for s in StrategyStatus]))
    sort = fields.String(load_default="-updated_at", validate=validate.OneOf(list(SORTS)))


class VersionOut(Schema):
    version = fields.Integer(required=True)
    code = fields.String(required=True)
    params = fields.Dict(required=True)
    changelog = fields.String(allow_none=True)
    created_at = UTCDateTime(required=True)


class VersionSummaryOut(VersionOut):
    class Meta:
        exclude = ("code",)


class ValidateIn(Schema):
    code = fields.String(required=True, validate=validate.Length(max=MAX_CODE))


class ViolationOut(Schema):
    line = fields.Integer(required=True)
    col = fields.Integer(required=True)
    message = fields.String(required=True)


class ValidateOut(Schema):
    valid = fields.Boolean(required=True)
    api = fields.String(allow_none=True, metadata={"description": "event, vectorized or null"})
    violations = fields.List(fields.Nested(ViolationOut), required=True)
    params = fields.Dict(required=True, metadata={"description": "the code's literal PARAMS"})


class TemplateOut(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    api = fields.String(required=True)
    category = fields.String(required=True)
    risk_level = fields.String(required=True)
    params = fields.Dict(required=True)
    code = fields.String(required=True)


class TemplateListOut(Schema):
    items = fields.List(fields.Nested(TemplateOut), required=True)
