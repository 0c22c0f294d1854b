"""Price alerts: users' thresholds on symbols, checked against each new daily close.

The market data sync calls `check_price_alerts` once per symbol after storing its newest bar;
every alert it trips raises a `price_alert` notification. "Crossing" means the previous close
was on one side of the price and this close is on the other (or on it), so an alert fires
once per crossing, not on every day the price stays beyond it.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.db import utcnow
from quantdesk.errors import Conflict, Invalid, NotFound
from quantdesk.market.symbols import normalise
from quantdesk.notifications.delivery import Runtime
from quantdesk.notifications.events import Event
from quantdesk.notifications.models import Notification, PriceAlert
from quantdesk.notifications.service import Staged, current_runtime, dispatch, stage

MAX_ALERTS_PER_USER = 100
CONDITIONS = ("above", "below", "rise_pct", "fall_pct")


def _symbol(raw: str) -> str:
    symbol = normalise(raw)
    if symbol is None:
        raise Invalid(
            "Not a symbol.",
            details={"symbol": ["Use e.g. 600519.SH, 000001.SZ, 430047.BJ or AAPL."]},
        )
    return symbol


def list_alerts(session: Session, *, user: User, symbol: str | None = None) -> Select[PriceAlert]:
    stmt = select(PriceAlert).where(PriceAlert.user_id == user.id)
    if symbol:
        stmt = stmt.where(PriceAlert.symbol == _symbol(symbol))
    return stmt.order_by(PriceAlert.id.desc())


def get_alert(session: Session, *, user: User, alert_id: int) -> PriceAlert:
    alert = session.get(PriceAlert, alert_id)
    if alert is None or alert.user_id != user.id:
        raise NotFound("No such price alert.")
    return alert


def create_alert(
    session: Session,
    *,
    user: User,
    symbol: str,
    condition: str,
    threshold: float,
    note: str | None = None,
    is_active: bool = True,
) -> PriceAlert:
    count = session.scalar(
        select(func.count()).select_from(PriceAlert).where(PriceAlert.user_id == user.id)
    )
    if (count or 0) >= MAX_ALERTS_PER_USER:
        raise Conflict(f"At most {MAX_ALERTS_PER_USER} price alerts; delete some first.")
    alert = PriceAlert(
        user_id=user.id,
        symbol=_symbol(symbol),
        condition=condition,
        threshold=threshold,
        note=note,
        is_active=is_active,
    )
    session.add(alert)
    session.commit()
    return alert


def update_alert(
    session: Session, *, user: User, alert_id: int, changes: dict[str, Any]
) -> PriceAlert:
    alert = get_alert(session, user=user, alert_id=alert_id)
    for name in ("condition", "threshold", "note", "is_active"):
        if name in changes:
            setattr(alert, name, changes[name])
    session.commit()
    return alert


def delete_alert(session: Session, *, user: User, alert_id: int) -> None:
    session.delete(get_alert(session, user=user, alert_id=alert_id))
    session.commit()


def tripped(condition: str, threshold: float, last_close: float, previous_close: float) -> bool:
    """Whether a move from `previous_close` to `last_close` trips the condition."""
    if condition == "above":
        return previous_close < threshold <= last_close
    if condition == "below":
        return previous_close > threshold >= last_close
    # Rounded, so 10 -> 9.5 is a fall of exactly 5% despite binary floating point.
    change_pct = round((last_close / previous_close - 1) * 100, 9)
    if condition == "rise_pct":
        return change_pct >= threshold
    if condition == "fall_pct":
        return -change_pct >= threshold
    raise ValueError(f"unknown condition {condition!r}")


def check_price_alerts(
    session: Session,
    *,
    symbol: str,
    last_close: float,
    previous_close: float | None,
    bar_date: dt.date | None = None,
    runtime: Runtime | None = None,
) -> list[Notification]:
    """Raise `price_alert` for every active alert on `symbol` this close trips; commits.

    With `bar_date`, an alert fires at most once per bar date (a sync that runs twice, or
    re-fetches recent days, does not repeat it). No previous close (a first bar): nothing.
    """
    if previous_close is None or not previous_close > 0 or not math.isfinite(last_close):
        return []
    alerts = session.scalars(
        select(PriceAlert).where(PriceAlert.symbol == symbol, PriceAlert.is_active)
    ).all()
    change_pct = round((last_close / previous_close - 1) * 100, 4)
    staged: list[Staged] = []
    for alert in alerts:
        if bar_date is not None and alert.last_triggered_on == bar_date:
            continue
        if not tripped(alert.condition, alert.threshold, last_close, previous_close):
            continue
        alert.last_triggered_at, alert.last_triggered_on = utcnow(), bar_date
        data = {
            "alert_id": alert.id,
            "symbol": symbol,
            "condition": alert.condition,
            "threshold": alert.threshold,
            "last_close": last_close,
            "previous_close": previous_close,
            "change_pct": change_pct,
            "date": bar_date,
            "note": alert.note,
        }
        item = stage(session, user_id=alert.user_id, event=Event.PRICE_ALERT, data=data)
        if item is not None:
            staged.append(item)
    session.commit()
    if staged:
        dispatch(runtime or current_runtime(), staged)
    return [item.notification for item in staged]
