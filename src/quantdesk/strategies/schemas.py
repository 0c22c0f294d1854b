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


# ---------------------------------------------------------------- paper trading

MAX_PAPER_SYMBOLS = 50
MAX_ID = 2**31 - 1  # ids are 32-bit; a bigger one is a 422, not a database error


class StrategyRunIn(Schema):
    """Start paper trading; `schedule` is crontab in PAPER_TIMEZONE (default: weekdays 15:30)."""

    symbols = fields.List(
        fields.String(validate=validate.Length(min=1, max=48)),
        required=True,
        validate=validate.Length(min=1, max=MAX_PAPER_SYMBOLS),
    )
    initial_capital = fields.Float(
        required=True, validate=validate.Range(min=1, max=1e12), allow_nan=False
    )
    schedule = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "crontab: minute hour day month weekday, e.g. '30 15 * * 1-5'"},
    )


class PaperPositionOut(Schema):
    symbol = fields.String(required=True)
    shares = fields.Float(required=True)
    avg_cost = fields.Float(allow_none=True)
    close = fields.Float(allow_none=True)
    market_value = fields.Float(allow_none=True)


class PaperOrderOut(Schema):
    symbol = fields.String(required=True)
    shares = fields.Float(required=True, metadata={"description": "+ buy, - sell"})
    reference_price = fields.Float(allow_none=True)


class PaperPortfolioOut(Schema):
    date = fields.String(allow_none=True, metadata={"description": "the last bar stepped"})
    cash = fields.Float(required=True)
    equity = fields.Float(required=True)
    positions = fields.List(fields.Nested(PaperPositionOut), required=True)
    pending_orders = fields.List(fields.Nested(PaperOrderOut), required=True)


def _config(key: str) -> fields.Function:
    return fields.Function(lambda execution: execution.config.get(key))


class ExecutionOut(Schema):
    """One paper-trading run: its settings, the paper portfolio now, and its profit and loss."""

    id = fields.Integer(required=True)
    strategy_id = fields.Integer(required=True)
    version = fields.Integer(required=True, metadata={"description": "the code version it runs"})
    status = fields.String(required=True, metadata={"description": "running, stopped or error"})
    symbols = _config("symbols")
    initial_capital = _config("initial_capital")
    schedule = _config("schedule")
    timezone = _config("timezone")
    market = _config("market")
    params = _config("params")
    start_time = UTCDateTime(required=True)
    end_time = UTCDateTime(allow_none=True)
    profit_loss = fields.Float(required=True)
    portfolio = fields.Nested(PaperPortfolioOut, required=True)
    state = fields.Dict(required=True, metadata={"description": "ctx.state after the last step"})
    last_bar_date = fields.Date(allow_none=True)
    last_step_at = UTCDateTime(allow_none=True)
    next_run_time = fields.Method("_next_run_time", allow_none=True)
    summary = fields.String(attribute="logs", allow_none=True)
    error = fields.String(allow_none=True)

    def _next_run_time(self, execution: Any) -> str | None:
        from quantdesk.strategies.schedule import next_tick

        moment = next_tick(execution)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


class ExecutionLogListArgs(PageArgs):
    execution_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    level = fields.String(validate=validate.OneOf(["info", "warning", "error"]))
    sort = fields.String(load_default="-time", validate=validate.OneOf(["time", "-time"]))


class ExecutionLogOut(Schema):
    id = fields.Integer(required=True)
    execution_id = fields.Integer(required=True)
    time = UTCDateTime(required=True)
    level = fields.String(required=True)
    message = fields.String(required=True)


class StrategySignalListArgs(PageArgs):
    execution_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))


class StrategySignalOut(Schema):
    id = fields.Integer(required=True)
    execution_id = fields.Integer(required=True)
    bar_date = fields.Date(required=True, metadata={"description": "the close it was decided on"})
    symbol = fields.String(required=True)
    side = fields.String(required=True, metadata={"description": "buy or sell"})
    shares = fields.Float(required=True)
    reference_price = fields.Float(allow_none=True, metadata={"description": "that close"})
    message = fields.String(required=True)
    created_at = UTCDateTime(required=True)
