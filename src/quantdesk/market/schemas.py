"""Market data request and response schemas, named by direction (In, Out, Args)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from webargs.fields import DelimitedList

from quantdesk.market.analytics import DEFAULT_INDICATORS, INDICATORS, Adjust, Freq
from quantdesk.market.service import SORTS
from quantdesk.schemas import PageArgs, UTCDateTime

MARKETS = validate.OneOf(["cn_a", "us"])
EARLIEST = dt.date(1990, 1, 1)


class StockListArgs(PageArgs):
    q = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "symbol prefix or part of the name, e.g. 600519 or 银行"},
    )
    exchange = fields.String(
        validate=validate.Length(max=16), metadata={"description": "SH, SZ, BJ, NASDAQ, NYSE"}
    )
    sector = fields.String(validate=validate.Length(max=50))
    kind = fields.String(validate=validate.OneOf(["stock", "index", "etf"]))
    market = fields.String(validate=MARKETS)
    sort = fields.String(load_default="symbol", validate=validate.OneOf(SORTS))


class StockOut(Schema):
    symbol = fields.String(required=True, metadata={"example": "600519.SH"})
    name = fields.String(required=True)
    exchange = fields.String(required=True)
    board = fields.String(required=True, metadata={"description": "main chinext star bse us"})
    market = fields.String(required=True, metadata={"description": "cn_a or us"})
    kind = fields.String(required=True, metadata={"description": "stock, index or etf"})
    sector = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    market_cap = fields.Float(allow_none=True, metadata={"description": "in `currency`"})
    currency = fields.String(required=True)
    listed_on = fields.Date(allow_none=True)
    is_st = fields.Boolean(required=True)
    source = fields.String(required=True, metadata={"description": "the provider of its bars"})
    synthetic = fields.Method(
        "_synthetic",
        metadata={"description": "true for the bundled synthetic A-shares: invented prices"},
    )
    first_date = fields.Date(allow_none=True)
    last_date = fields.Date(allow_none=True)
    last_close = fields.Float(allow_none=True)
    change = fields.Float(allow_none=True)
    change_pct = fields.Float(allow_none=True, metadata={"description": "percent"})
    updated_at = UTCDateTime()

    def _synthetic(self, stock: Any) -> bool:
        return bool(stock.source == "sample" and stock.market == "cn_a")


class PriceOut(Schema):
    symbol = fields.String(required=True)
    name = fields.String(required=True)
    date = fields.Date(required=True)
    open = fields.Float(required=True)
    high = fields.Float(required=True)
    low = fields.Float(required=True)
    close = fields.Float(required=True)
    volume = fields.Integer(required=True, metadata={"description": "shares"})
    amount = fields.Float(allow_none=True, metadata={"description": "turnover in `currency`"})
    prev_close = fields.Float(allow_none=True, metadata={"description": "reference price"})
    change = fields.Float(allow_none=True)
    change_pct = fields.Float(allow_none=True, metadata={"description": "percent"})
    suspended = fields.Boolean(required=True)
    is_st = fields.Boolean(required=True)
    limit_up = fields.Float(allow_none=True, metadata={"description": "A-shares only"})
    limit_down = fields.Float(allow_none=True, metadata={"description": "A-shares only"})
    currency = fields.String(required=True)


class _RangeArgs(Schema):
    start = fields.Date(metadata={"description": "YYYY-MM-DD; default one year before end"})
    end = fields.Date(metadata={"description": "YYYY-MM-DD; default the latest bar"})
    adjust = fields.Enum(
        Adjust,
        by_value=True,
        load_default=Adjust.QFQ,
        metadata={"description": "qfq (forward, default), hfq (backward) or none"},
    )

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("start"), data.get("end")
        for name, day in (("start", start), ("end", end)):
            if day is not None and day < EARLIEST:
                raise ValidationError(f"Must be on or after {EARLIEST}.", field_name=name)
        if start and end and start > end:
            raise ValidationError("Must not be after end.", field_name="start")


class HistoryArgs(_RangeArgs):
    freq = fields.Enum(Freq, by_value=True, load_default=Freq.DAILY)


class BarOut(Schema):
    date = fields.Date(required=True)
    open = fields.Float(required=True)
    high = fields.Float(required=True)
    low = fields.Float(required=True)
    close = fields.Float(required=True)
    volume = fields.Integer(required=True, metadata={"description": "shares"})
    amount = fields.Float(allow_none=True)
    change_pct = fields.Float(
        allow_none=True, metadata={"description": "against the reference (previous) close, %"}
    )
    suspended = fields.Boolean(required=True)
    is_st = fields.Boolean(required=True)


class HistoryOut(Schema):
    symbol = fields.String(required=True)
    adjust = fields.String(required=True)
    freq = fields.String(required=True)
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    bars = fields.List(fields.Nested(BarOut), required=True)


def _names(value: list[str]) -> None:
    unknown = [name for name in value if name not in INDICATORS]
    if unknown:
        raise ValidationError(
            f"Unknown indicators {unknown}; known: {', '.join(INDICATORS)}.", field_name="names"
        )


def _param_fields() -> dict[str, fields.Field[Any]]:
    out: dict[str, fields.Field[Any]] = {}
    for name, spec in INDICATORS.items():
        for param, rule in spec.params.items():
            kind = fields.Integer if rule.integer else fields.Float
            out[f"{name}_{param}"] = kind(
                validate=validate.Range(min=rule.low, max=rule.high),
                metadata={"description": f"{name} {param} (default {rule.default:g})"},
            )
    return out


IndicatorArgs = _RangeArgs.from_dict(
    {
        "names": DelimitedList(
            fields.String(validate=validate.Length(max=20)),
            load_default=list(DEFAULT_INDICATORS),
            validate=[validate.Length(min=1, max=len(INDICATORS)), _names],
            metadata={"description": f"comma-separated, of {', '.join(INDICATORS)}"},
        ),
        **_param_fields(),
    },
    name="IndicatorArgs",
)


class IndicatorsOut(Schema):
    symbol = fields.String(required=True)
    adjust = fields.String(required=True)
    start = fields.Date(required=True)
    end = fields.Date(required=True)
    dates = fields.List(fields.Date(), required=True)
    series = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Float(allow_none=True)),
        required=True,
        metadata={"description": "one list per output (sma, macd_signal, boll_upper...)"},
    )
    params = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)


class MarketArgs(PageArgs):
    market = fields.String(validate=MARKETS)


class IndexOut(Schema):
    symbol = fields.String(required=True)
    name = fields.String(required=True)
    market = fields.String(required=True)
    date = fields.Date(attribute="last_date", allow_none=True)
    close = fields.Float(attribute="last_close", allow_none=True)
    change = fields.Float(allow_none=True)
    change_pct = fields.Float(allow_none=True)
    synthetic = fields.Method("_synthetic")

    def _synthetic(self, stock: Any) -> bool:
        return bool(stock.source == "sample" and stock.market == "cn_a")


class SectorOut(Schema):
    sector = fields.String(required=True)
    stock_count = fields.Integer(required=True)
    avg_change_pct = fields.Float(allow_none=True, metadata={"description": "latest day, %"})
    advancers = fields.Integer(required=True)
    decliners = fields.Integer(required=True)
    date = fields.Date(allow_none=True, metadata={"description": "the newest bar counted"})


class WatchlistIn(Schema):
    symbol = fields.String(required=True, validate=validate.Length(min=1, max=48))


class WatchlistItemOut(Schema):
    symbol = fields.String(required=True)
    name = fields.String(required=True)
    exchange = fields.String(required=True)
    kind = fields.String(required=True)
    last_date = fields.Date(allow_none=True)
    last_close = fields.Float(allow_none=True)
    change = fields.Float(allow_none=True)
    change_pct = fields.Float(allow_none=True)
    added_at = UTCDateTime(required=True)
