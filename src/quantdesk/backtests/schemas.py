"""Backtest request and response schemas, named by direction (STRATEGY_API.md section 5 knobs)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from quantdesk.backtests import spec
from quantdesk.backtests.models import Status
from quantdesk.backtests.service import SORTS
from quantdesk.schemas import ID_RANGE, PageArgs, UTCDateTime

RATE = validate.Range(min=0, max=1)
MARKETS = ["cn_a", "us"]
FILLS = ["next_open", "next_close"]
ADJUSTS = ["qfq", "hfq", "none"]
EXPORT_FORMATS = ["csv", "xlsx", "json"]
MAX_GRID_VALUES = 1000  # per parameter; the product is capped by BACKTEST_MAX_GRID_COMBINATIONS


class BacktestCostsIn(Schema):
    """Overrides of the market's dated cost rules; a missing one keeps the rulebook's value."""

    commission_rate = fields.Float(validate=RATE, metadata={"description": "0.00025 = 0.025%"})
    min_commission = fields.Float(
        validate=validate.Range(min=0, max=1_000_000), metadata={"description": "per order"}
    )
    stamp_duty_rate = fields.Float(validate=RATE, metadata={"description": "on sells"})
    transfer_fee_rate = fields.Float(validate=RATE, metadata={"description": "both sides"})


def _scalar_values(values: list[Any]) -> None:
    for value in values:
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValidationError("Grid values must be numbers, strings, booleans or null.")


class BacktestCreateIn(Schema):
    strategy_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    name = fields.String(validate=validate.Length(min=1, max=200))
    symbols = fields.List(
        fields.String(validate=validate.Length(min=1, max=48)),
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"description": 'e.g. ["600519.SH"] or ["AAPL", "MSFT"]'},
    )
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True)
    initial_capital = fields.Float(
        required=True, validate=validate.Range(min=0, min_inclusive=False, max=1e13)
    )
    benchmark = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=48),
        metadata={
            "description": "a stored symbol; null for none; missing: the market's default "
            "(000300.SH for cn_a, SPY for us) when its bars are stored"
        },
    )
    market = fields.String(
        validate=validate.OneOf(MARKETS), metadata={"description": "default: from the symbols"}
    )
    params = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        metadata={"description": "overrides of the strategy's PARAMS"},
    )
    param_grid = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        values=fields.List(
            fields.Raw(allow_none=True),
            validate=[validate.Length(min=1, max=MAX_GRID_VALUES), _scalar_values],
        ),
        metadata={
            "description": 'values to try per parameter, e.g. {"fast": [5, 10, 20], "slow": '
            "[30, 60]}: every combination runs as a backtest of its own"
        },
    )
    rank_by = fields.String(
        validate=validate.OneOf(spec.METRICS),
        metadata={"description": "the metric that ranks a grid (default sharpe_ratio)"},
    )
    costs = fields.Nested(BacktestCostsIn)
    fill = fields.String(load_default="next_open", validate=validate.OneOf(FILLS))
    slippage_bps = fields.Float(
        load_default=0.0, validate=validate.Range(min=0, max=10_000, max_inclusive=False)
    )
    adjust = fields.String(load_default="qfq", validate=validate.OneOf(ADJUSTS))
    risk_free_rate = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=-0.5, max=1),
        metadata={"description": "annual, for Sharpe, Sortino and alpha (0.02 = 2%)"},
    )

    @validates_schema
    def _dates_and_grid(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("start_date"), data.get("end_date")
        if start and end and start > end:
            raise ValidationError("Must not be after end_date.", "start_date")
        if "rank_by" in data and not data.get("param_grid"):
            raise ValidationError("Only a param_grid is ranked.", "rank_by")


class BacktestListArgs(PageArgs):
    strategy_id = fields.Integer(validate=ID_RANGE)
    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    grid_id = fields.Integer(
        validate=ID_RANGE, metadata={"description": "list this grid's combinations"}
    )
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(list(SORTS)))


class BacktestSummaryOut(Schema):
    final_value = fields.Float(required=True)
    total_return = fields.Float(allow_none=True)
    annual_return = fields.Float(allow_none=True)
    sharpe_ratio = fields.Float(allow_none=True)
    max_drawdown = fields.Float(allow_none=True)
    trades_count = fields.Integer(required=True)


class BacktestOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "single, grid or combination"})
    strategy_id = fields.Integer(required=True)
    strategy_name = fields.String(required=True)
    grid_id = fields.Integer(attribute="parent_id", allow_none=True)
    status = fields.String(
        required=True, metadata={"description": "queued, running, finished, failed, cancelled"}
    )
    progress = fields.Float(required=True, metadata={"description": "0..1"})
    error = fields.String(allow_none=True)
    traceback = fields.String(
        allow_none=True, metadata={"description": "the strategy's own frames only"}
    )
    error_kind = fields.String(
        allow_none=True,
        metadata={
            "description": "what stopped it: cpu, wall, memory, ..., integrity; queue (never sent)"
        },
    )
    notices = fields.List(fields.String(), required=True)
    symbols = fields.List(fields.String(), required=True)
    start_date = fields.Date(required=True)
    end_date = fields.Date(required=True)
    initial_capital = fields.Float(required=True)
    benchmark = fields.String(allow_none=True)
    market = fields.String(required=True)
    adjust = fields.String(required=True)
    fill = fields.String(required=True)
    slippage_bps = fields.Float(required=True)
    costs = fields.Dict(required=True)
    risk_free_rate = fields.Float(required=True)
    params = fields.Dict(required=True)
    param_grid = fields.Dict(allow_none=True)
    rank_by = fields.String(allow_none=True)
    combinations = fields.Method(
        "_combinations",
        allow_none=True,
        metadata={"type": "integer", "description": "a grid's combination count; null otherwise"},
    )
    config = fields.Dict(required=True, metadata={"description": "the config the sandbox received"})
    strategy_version = fields.Integer(required=True)
    code_sha256 = fields.String(required=True)
    rulebook_version = fields.String(required=True)
    engine_version = fields.String(required=True)
    data_fingerprint = fields.String(required=True)
    request_hash = fields.String(required=True)
    data_start = fields.Date(allow_none=True, metadata={"description": "first bar of the run"})
    data_end = fields.Date(allow_none=True, metadata={"description": "last bar of the run"})
    bars_count = fields.Integer(allow_none=True, metadata={"description": "trading days"})
    reused_from = fields.Integer(attribute="reused_from_id", allow_none=True)
    attempts = fields.Integer(required=True)
    timings = fields.Dict(required=True, metadata={"description": "seconds per phase"})
    summary = fields.Nested(BacktestSummaryOut, attribute="result", allow_none=True)
    created_at = UTCDateTime(required=True)
    started_at = UTCDateTime(allow_none=True)
    finished_at = UTCDateTime(allow_none=True)

    def _combinations(self, backtest: Any) -> int | None:
        grid = backtest.param_grid
        return spec.combination_count(grid) if grid else None


class BacktestMetricsOut(Schema):
    """STRATEGY_API.md section 4: fractions where a percentage is meant; null when undefined."""

    backtest_id = fields.Integer(required=True)
    combination_id = fields.Integer(
        allow_none=True, metadata={"description": "for a grid: its best combination"}
    )
    final_value = fields.Float(required=True)
    total_return = fields.Float(allow_none=True)
    annual_return = fields.Float(allow_none=True)
    annual_volatility = fields.Float(allow_none=True)
    sharpe_ratio = fields.Float(allow_none=True)
    sortino_ratio = fields.Float(allow_none=True)
    max_drawdown = fields.Float(allow_none=True)
    max_drawdown_duration = fields.Integer(allow_none=True)
    calmar_ratio = fields.Float(allow_none=True)
    trades_count = fields.Integer(required=True)
    round_trips_count = fields.Integer(allow_none=True)
    win_rate = fields.Float(allow_none=True)
    profit_loss_ratio = fields.Float(allow_none=True)
    benchmark_return = fields.Float(allow_none=True)
    alpha = fields.Float(allow_none=True)
    beta = fields.Float(allow_none=True)
    information_ratio = fields.Float(allow_none=True)
    tracking_error = fields.Float(allow_none=True)
    turnover = fields.Float(allow_none=True)


class BacktestPlainMetricsOut(BacktestMetricsOut):
    class Meta:
        exclude = ("backtest_id", "combination_id")


class BacktestEquityOut(Schema):
    date = fields.Date(required=True)
    equity = fields.Float(required=True)
    cash = fields.Float(required=True)
    benchmark = fields.Float(allow_none=True, metadata={"description": "scaled to the capital"})
    drawdown = fields.Float(required=True)


class BacktestTradeOut(Schema):
    id = fields.Integer(required=True)
    timestamp = fields.Date(required=True, metadata={"description": "the fill's trading day"})
    symbol = fields.String(required=True)
    action = fields.String(required=True, metadata={"description": "buy or sell"})
    quantity = fields.Float(required=True)
    price = fields.Float(required=True)
    value = fields.Float(required=True)
    commission = fields.Float(required=True, metadata={"description": "with the minimum top-up"})
    min_commission_topup = fields.Float(required=True)
    stamp_duty = fields.Float(required=True)
    transfer_fee = fields.Float(required=True)
    slippage = fields.Float(required=True, metadata={"description": "inside the price"})
    profit_loss = fields.Float(
        allow_none=True, metadata={"description": "a sell's realised P&L, FIFO, net of costs"}
    )


class BacktestRefusalOut(Schema):
    date = fields.Date(required=True)
    symbol = fields.String(required=True)
    side = fields.String(required=True)
    requested = fields.Float(required=True)
    filled = fields.Float(required=True)
    reason = fields.String(
        required=True,
        metadata={
            "description": "suspended, limit_up, limit_down, t_plus_1, lot_size, cash, no_next_bar"
        },
    )


class BacktestLogOut(Schema):
    date = fields.Date(allow_none=True)
    message = fields.String(required=True)


class BacktestCostSummaryOut(Schema):
    commission = fields.Float(required=True)
    min_commission_fills = fields.Integer(
        required=True, metadata={"description": "fills that paid the minimum commission"}
    )
    min_commission_topup = fields.Float(required=True)
    stamp_duty = fields.Float(required=True)
    transfer_fee = fields.Float(required=True)
    slippage = fields.Float(required=True)
    total = fields.Float(required=True, metadata={"description": "commission + duty + fees"})
    fills = fields.Integer(required=True)
    share_of_capital = fields.Float(required=True)


class BacktestGridRowOut(Schema):
    rank = fields.Integer(allow_none=True, metadata={"description": "1 = best"})
    position = fields.Integer(required=True)
    backtest_id = fields.Integer(required=True)
    params = fields.Dict(required=True)
    status = fields.String(required=True)
    score = fields.Float(allow_none=True, metadata={"description": "the rank_by metric"})
    error = fields.String(allow_none=True)
    metrics = fields.Dict(required=True)


class BacktestGridOut(Schema):
    grid_id = fields.Integer(required=True)
    status = fields.String(required=True)
    rank_by = fields.String(required=True)
    lower_is_better = fields.Boolean(required=True)
    parameters = fields.List(fields.String(), required=True)
    param_grid = fields.Dict(required=True)
    rows = fields.List(fields.Nested(BacktestGridRowOut), required=True)


class BacktestResultOut(Schema):
    backtest_id = fields.Integer(required=True)
    combination_id = fields.Integer(
        allow_none=True, metadata={"description": "for a grid: the best combination shown"}
    )
    final_value = fields.Float(required=True)
    metrics = fields.Nested(BacktestPlainMetricsOut, required=True)
    cost_summary = fields.Nested(BacktestCostSummaryOut, required=True)
    rulebook_version = fields.String(required=True)
    benchmark = fields.String(allow_none=True)
    equity = fields.List(fields.Nested(BacktestEquityOut), required=True)
    trades = fields.List(fields.Nested(BacktestTradeOut), required=True)
    refusals = fields.List(fields.Nested(BacktestRefusalOut), required=True)
    positions = fields.List(fields.Dict(), required=True)
    logs = fields.List(fields.Nested(BacktestLogOut), required=True)
    records = fields.Dict(required=True, metadata={"description": "ctx.record series"})
    notices = fields.List(fields.String(), required=True)
    grid = fields.Nested(BacktestGridOut, allow_none=True)


class BacktestExportIn(Schema):
    format = fields.String(
        required=True,
        validate=validate.OneOf(EXPORT_FORMATS),
        metadata={
            "description": "csv: a zip of trades.csv and equity.csv; xlsx: sheets summary, "
            "equity, trades; json: the full result"
        },
    )
