"""Market data endpoints (API.md "Market data"); thin: parse, call one service, serialise."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Api

from quantdesk.auth.tokens import current_user, current_user_id, login_required
from quantdesk.extensions import current_extensions
from quantdesk.market import service
from quantdesk.market import tasks as _tasks  # registers the market's background tasks
from quantdesk.market.analytics import INDICATORS
from quantdesk.market.cache import MarketCache, market_cache
from quantdesk.market.schemas import (
    HistoryArgs,
    HistoryOut,
    IndexOut,
    IndicatorArgs,
    IndicatorsOut,
    MarketArgs,
    PriceOut,
    SectorOut,
    StockListArgs,
    StockOut,
    WatchlistIn,
    WatchlistItemOut,
)
from quantdesk.openapi import BEARER, ApiBlueprint
from quantdesk.schemas import PageArgs, page_of, paginate
from quantdesk.web import requires_json

blp = ApiBlueprint(
    "market", __name__, url_prefix="/api/data", description="Market data: stocks, bars, lists"
)
_ = _tasks
_PARAM_NAMES = {f"{n}_{p}" for n, spec in INDICATORS.items() for p in spec.params}


def _cache() -> MarketCache:
    return market_cache(current_extensions())


def _json(text: str) -> Response:
    return Response(text, mimetype="application/json")


@blp.get("/stocks")
@login_required()
@blp.arguments(StockListArgs, location="query")
@blp.response(200, page_of(StockOut))
@blp.doc(security=BEARER)
def list_stocks(args: dict[str, Any]) -> Any:
    """Search instruments by symbol or name; filter by exchange, sector, kind, market."""
    session = current_extensions().db.session
    stmt = service.search_stocks(
        session,
        query=args.get("q"),
        exchange=args.get("exchange"),
        sector=args.get("sector"),
        kind=args.get("kind"),
        market=args.get("market"),
        sort=args["sort"],
    )
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/stocks/<string:symbol>")
@login_required()
@blp.response(200, StockOut)
@blp.doc(security=BEARER)
def get_stock(symbol: str) -> Any:
    """One instrument: listing facts and its latest close (also your own user:<name> sets)."""
    return service.get_stock(current_extensions().db.session, symbol, user_id=current_user_id())


@blp.get("/stocks/<string:symbol>/price")
@login_required()
@blp.response(200, PriceOut)
@blp.doc(security=BEARER)
def get_price(symbol: str) -> Any:
    """The latest bar, its change and change in percent, and the day's price limits."""
    return service.latest_price(current_extensions().db.session, symbol=symbol)


@blp.get("/stocks/<string:symbol>/history")
@login_required()
@blp.arguments(HistoryArgs, location="query")
@blp.response(200, HistoryOut)
@blp.doc(security=BEARER)
def get_history(args: dict[str, Any], symbol: str) -> Any:
    """Daily, weekly or monthly bars from start to end, forward/backward adjusted or raw."""
    text = service.history_json(
        current_extensions().db.read_session,
        symbol=symbol,
        start=args.get("start"),
        end=args.get("end"),
        adjust=args["adjust"],
        freq=args["freq"],
        cache=_cache(),
        user_id=current_user_id(),
    )
    return _json(text)


@blp.get("/stocks/<string:symbol>/indicators")
@login_required()
@blp.arguments(IndicatorArgs, location="query")
@blp.response(200, IndicatorsOut)
@blp.doc(security=BEARER)
def get_indicators(args: dict[str, Any], symbol: str) -> Any:
    """Indicator series (equal to TA-Lib's); parameters as `<name>_<param>`, e.g. sma_n=20."""
    text = service.indicators_json(
        current_extensions().db.read_session,
        symbol=symbol,
        names=args["names"],
        params={key: value for key, value in args.items() if key in _PARAM_NAMES},
        start=args.get("start"),
        end=args.get("end"),
        adjust=args["adjust"],
        cache=_cache(),
    )
    return _json(text)


@blp.get("/market/indices")
@login_required()
@blp.arguments(MarketArgs, location="query")
@blp.response(200, page_of(IndexOut))
@blp.doc(security=BEARER)
def list_indices(args: dict[str, Any]) -> Any:
    """The main indices with their latest close and change."""
    session = current_extensions().db.session
    stmt = service.indices(session, market=args.get("market"))
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/market/sectors")
@login_required()
@blp.arguments(MarketArgs, location="query")
@blp.response(200, page_of(SectorOut))
@blp.doc(security=BEARER)
def list_sectors(args: dict[str, Any]) -> Any:
    """Sectors with their stock counts and average latest change, strongest first."""
    rows = service.sectors(
        current_extensions().db.session, market=args.get("market"), cache=_cache()
    )
    page, per_page = args["page"], args["per_page"]
    items = rows[(page - 1) * per_page : page * per_page]
    return {"items": items, "page": page, "per_page": per_page, "total": len(rows)}


@blp.post("/watchlist")
@login_required()
@requires_json
@blp.arguments(WatchlistIn)
@blp.response(201, WatchlistItemOut)
@blp.doc(security=BEARER)
def add_to_watchlist(body: dict[str, Any]) -> Any:
    """Put an instrument on your watchlist (409 if it is there already)."""
    return service.add_to_watchlist(
        current_extensions().db.session, user_id=current_user().id, symbol=body["symbol"]
    )


@blp.get("/watchlist")
@login_required()
@blp.arguments(PageArgs, location="query")
@blp.response(200, page_of(WatchlistItemOut))
@blp.doc(security=BEARER)
def get_watchlist(args: dict[str, Any]) -> Any:
    """Your watchlist, newest first, with the latest close and change."""
    return service.watchlist(
        current_extensions().db.session,
        user_id=current_user().id,
        page=args["page"],
        per_page=args["per_page"],
    )


@blp.delete("/watchlist/<string:symbol>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def remove_from_watchlist(symbol: str) -> Any:
    """Take an instrument off your watchlist."""
    service.remove_from_watchlist(
        current_extensions().db.session, user_id=current_user().id, symbol=symbol
    )


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
