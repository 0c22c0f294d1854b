"""Paper trading through the HTTP API: run, steps, signals, logs, stop, errors and ownership."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from quantdesk.extensions import extensions_of
from quantdesk.market.models import SyncRun
from quantdesk.strategies.tasks import paper_step
from tests.strategies.paper_data import (
    COUNTER,
    RAISES,
    SPINS,
    SYMBOLS,
    add_bars,
    create_strategy,
    logs,
    run,
    signals,
    trading_days,
)
from tests.support import Account, Api, assert_error

DAYS = trading_days(40)  # 2024-01-02 .. 2024-02-26
NEW = trading_days(2, start=DAYS[-1] + dt.timedelta(days=1))  # 2024-02-27, 2024-02-28


def _execution(api: Api, account: Account, strategy_id: int) -> dict:
    response = api.get(f"/api/strategies/{strategy_id}/execution", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def _step(app: Flask, execution_id: int) -> None:
    """What a scheduled tick does on a worker (inline here: TASKS_EAGER)."""
    extensions_of(app).tasks.submit(paper_step, execution_id)


def _notifications(api: Api, account: Account, event: str) -> list[dict]:
    response = api.get("/api/notifications", headers=account.headers)
    assert response.status_code == 200
    return [n for n in response.get_json()["items"] if n["event"] == event]


def test_run_steps_once_at_once_with_signals_logs_and_a_notification(api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    assert execution["status"] == "running"
    assert execution["symbols"] == list(SYMBOLS)
    assert execution["last_bar_date"] == DAYS[-1].isoformat()
    assert execution["state"] == {"calls": 1}  # the strategy ran once: on the latest bar
    assert execution["profit_loss"] == 0.0  # nothing traded yet: the orders fill tomorrow
    portfolio = execution["portfolio"]
    assert portfolio == {
        "date": DAYS[-1].isoformat(),
        "cash": 100_000.0,
        "equity": 100_000.0,
        "positions": [],
        "pending_orders": [
            {"symbol": "600600.SH", "shares": 100.0, "reference_price": 11.95},
            {"symbol": "000999.SZ", "shares": 100.0, "reference_price": 21.95},
        ],
    }
    found = signals(api, owner, sid)
    assert [(s["side"], s["shares"], s["symbol"]) for s in reversed(found)] == [
        ("buy", 100.0, "600600.SH"),
        ("buy", 100.0, "000999.SZ"),
    ]
    assert found[-1]["message"] == "buy 100 600600.SH at the next open"
    assert found[-1]["bar_date"] == DAYS[-1].isoformat()
    assert found[-1]["reference_price"] == 11.95
    lines = [(line["level"], line["message"]) for line in logs(api, owner, sid)]
    assert lines[0][1].startswith("Paper trading started: version 1, 600600.SH, 000999.SZ")
    assert lines[1:] == [
        ("info", "[2024-02-26] call 1 sees 40 bars"),
        ("info", "Signal: buy 100 600600.SH at the next open (last close 11.95)"),
        ("info", "Signal: buy 100 000999.SZ at the next open (last close 21.95)"),
        ("info", "Step 2024-02-26: equity 100,000.00 (P&L +0.00), 0 fills, 2 signals"),
    ]
    (notice,) = _notifications(api, owner, "strategy_signal")
    assert notice["data"]["strategy_id"] == sid
    assert notice["data"]["date"] == "2024-02-26"
    assert notice["data"]["signals"] == [
        {"symbol": "600600.SH", "action": "buy", "quantity": 100, "price": 11.95},
        {"symbol": "000999.SZ", "action": "buy", "quantity": 100, "price": 21.95},
    ]
    strategy = api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()
    assert strategy["status"] == "running"


def test_a_later_step_carries_the_portfolio_and_state_forward(
    app: Flask, api: Api, db: Session
) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    first = run(api, owner, sid)
    add_bars(db, NEW)
    _step(app, first["id"])
    execution = _execution(api, owner, sid)
    assert execution["id"] == first["id"]
    assert execution["last_bar_date"] == "2024-02-28"
    assert execution["state"] == {"calls": 3}  # 1, then one call per new bar
    book = execution["portfolio"]
    # Yesterday's signals filled at the first new open, the next day's order at the next.
    assert [(p["symbol"], p["shares"]) for p in book["positions"]] == [
        ("000999.SZ", 200.0),
        ("600600.SH", 200.0),
    ]
    fills = [line["message"] for line in logs(api, owner, sid) if "bought" in line["message"]]
    assert fills == [
        "2024-02-27: bought 100 600600.SH at 11.98 (costs 5.01)",
        "2024-02-27: bought 100 000999.SZ at 21.98 (costs 5.02)",
        "2024-02-28: bought 100 600600.SH at 12.03 (costs 5.01)",
        "2024-02-28: bought 100 000999.SZ at 22.03 (costs 5.02)",
    ]
    spent = 100 * (11.98 + 21.98 + 12.03 + 22.03)
    assert book["cash"] == pytest.approx(100_000 - spent - 20.06, abs=0.02)
    by_symbol = {p["symbol"]: p for p in book["positions"]}
    assert by_symbol["600600.SH"]["avg_cost"] == pytest.approx((11.98 + 12.03) / 2, abs=0.01)
    assert by_symbol["600600.SH"]["market_value"] == pytest.approx(200 * 12.05)
    assert book["equity"] == pytest.approx(book["cash"] + 200 * 12.05 + 200 * 22.05)
    assert execution["profit_loss"] == pytest.approx(book["equity"] - 100_000)
    assert execution["profit_loss"] < 0  # bought at the opens, paid the costs
    assert [o["symbol"] for o in book["pending_orders"]] == ["600600.SH", "000999.SZ"]
    messages = [line["message"] for line in logs(api, owner, sid)]
    assert "[2024-02-27] call 2 sees 41 bars" in messages
    assert "[2024-02-28] call 3 sees 42 bars" in messages
    assert [s["bar_date"] for s in signals(api, owner, sid)] == ["2024-02-28"] * 2 + [
        "2024-02-26"
    ] * 2
    assert len(_notifications(api, owner, "strategy_signal")) == 2


def test_without_a_new_bar_a_step_does_nothing(app: Flask, api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    first = run(api, owner, sid)
    before = logs(api, owner, sid)
    _step(app, first["id"])
    _step(app, first["id"])
    after = _execution(api, owner, sid)
    assert logs(api, owner, sid) == before
    assert len(signals(api, owner, sid)) == 2
    assert after["last_step_at"] == first["last_step_at"]
    assert after["state"] == {"calls": 1}
    add_bars(db, NEW[:1])
    _step(app, first["id"])
    _step(app, first["id"])  # the same tick delivered twice: one step
    assert _execution(api, owner, sid)["state"] == {"calls": 2}
    steps = [line for line in logs(api, owner, sid) if line["message"].startswith("Step ")]
    assert [line["message"][:15] for line in steps] == ["Step 2024-02-26", "Step 2024-02-27"]


def test_the_warm_up_window_bounds_the_history_a_step_loads(make_app: object) -> None:
    new_app = make_app(PAPER_WARMUP_BARS=10)  # type: ignore[operator]
    api = Api(new_app)
    session = extensions_of(new_app).db.session_factory()
    try:
        add_bars(session, DAYS)
        owner = api.logged_in()
        sid = create_strategy(api, owner)
        execution = run(api, owner, sid)
        add_bars(session, NEW)
        _step(new_app, execution["id"])
    finally:
        session.close()
    messages = [line["message"] for line in logs(api, owner, sid)]
    # 10 bars of history before the first new bar, then the new ones.
    assert "[2024-02-26] call 1 sees 11 bars" in messages
    assert "[2024-02-27] call 2 sees 11 bars" in messages
    assert "[2024-02-28] call 3 sees 12 bars" in messages


def test_stop_and_the_conflicts(api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    first = run(api, owner, sid)
    again = api.post(
        f"/api/strategies/{sid}/run",
        headers=owner.headers,
        json={"symbols": list(SYMBOLS), "initial_capital": 50_000},
    )
    assert "already running" in assert_error(again, 409, "conflict")["message"]
    deleted = api.delete(f"/api/strategies/{sid}", headers=owner.headers)
    assert_error(deleted, 409, "conflict")
    stopped = api.post(f"/api/strategies/{sid}/stop", headers=owner.headers)
    assert stopped.status_code == 200, stopped.get_json()
    body = stopped.get_json()
    assert body["id"] == first["id"]
    assert body["status"] == "stopped"
    assert body["end_time"] is not None
    assert body["next_run_time"] is None
    assert api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()["status"] == (
        "stopped"
    )
    assert logs(api, owner, sid)[-1]["message"] == "Paper trading stopped."
    twice = api.post(f"/api/strategies/{sid}/stop", headers=owner.headers)
    assert "not running" in assert_error(twice, 409, "conflict")["message"]
    second = run(api, owner, sid, initial_capital=50_000)
    assert second["id"] != first["id"]
    assert second["portfolio"]["cash"] == 50_000.0
    assert second["state"] == {"calls": 1}  # a new run starts afresh
    runs = api.get(f"/api/strategies/{sid}/executions", headers=owner.headers).get_json()
    assert [(r["id"], r["status"]) for r in runs["items"]] == [
        (second["id"], "running"),
        (first["id"], "stopped"),
    ]
    one = api.get(f"/api/strategies/{sid}/executions/{first['id']}", headers=owner.headers)
    assert one.get_json()["status"] == "stopped"
    only_second = logs(api, owner, sid, execution_id=second["id"])
    assert {line["execution_id"] for line in only_second} == {second["id"]}


def test_a_run_keeps_the_version_it_started_with(app: Flask, api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    edited = COUNTER.replace('"call", calls', '"edited call", calls')
    response = api.put(f"/api/strategies/{sid}", headers=owner.headers, json={"code": edited})
    assert response.get_json()["version"] == 2
    add_bars(db, NEW[:1])
    _step(app, execution["id"])
    messages = [line["message"] for line in logs(api, owner, sid)]
    assert "[2024-02-27] call 2 sees 41 bars" in messages
    assert not any("edited" in m for m in messages)
    assert _execution(api, owner, sid)["version"] == 1


def test_a_strategy_that_raises_sets_error_logs_the_reason_and_notifies(
    api: Api, db: Session
) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner, code=RAISES, name="Broken")
    execution = run(api, owner, sid)
    assert execution["status"] == "error"
    assert execution["error"] == (
        "handle_bar failed on 2024-02-26: ZeroDivisionError('division by zero')"
    )
    assert execution["end_time"] is not None
    assert execution["last_bar_date"] is None  # the failed step stored nothing
    assert signals(api, owner, sid) == []
    errors = logs(api, owner, sid, level="error")
    assert errors[0]["message"] == (
        "Step 2024-02-26 failed: handle_bar failed on 2024-02-26: "
        "ZeroDivisionError('division by zero')"
    )
    assert 'File "strategy.py", line 2, in handle_bar' in errors[1]["message"]
    assert errors[-1]["message"] == "Paper trading stopped with an error."
    strategy = api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()
    assert strategy["status"] == "error"
    (notice,) = _notifications(api, owner, "strategy_error")
    assert notice["data"]["strategy_name"] == "Broken"
    assert "ZeroDivisionError" in notice["data"]["error"]
    assert _notifications(api, owner, "strategy_signal") == []
    stop = api.post(f"/api/strategies/{sid}/stop", headers=owner.headers)
    assert_error(stop, 409, "conflict")
    # An errored strategy may be run again (after a fix, say): a new execution.
    fixed = api.put(f"/api/strategies/{sid}", headers=owner.headers, json={"code": COUNTER})
    assert fixed.status_code == 200
    assert run(api, owner, sid)["status"] == "running"


def test_a_sandbox_limit_sets_error_with_the_limit_named(make_app: object) -> None:
    new_app = make_app(SANDBOX_CPU_SECONDS=1, SANDBOX_WALL_SECONDS=10)  # type: ignore[operator]
    api = Api(new_app)
    session = extensions_of(new_app).db.session_factory()
    try:
        add_bars(session, DAYS)
    finally:
        session.close()
    owner = api.logged_in()
    sid = create_strategy(api, owner, code=SPINS, name="Spinner")
    execution = run(api, owner, sid)
    assert execution["status"] == "error"
    assert execution["error"] == "stopped: CPU time limit of 1 s reached"
    errors = [line["message"] for line in logs(api, owner, sid, level="error")]
    assert errors == [
        "Step 2024-02-26 failed: stopped: CPU time limit of 1 s reached",
        "Paper trading stopped with an error.",
    ]
    (notice,) = _notifications(api, owner, "strategy_error")
    assert notice["data"]["error"] == "stopped: CPU time limit of 1 s reached"
    assert notice["title"]  # rendered from the template


def test_others_get_404_for_everything_paper_trading(api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner, other = api.logged_in(), api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    body = {"symbols": list(SYMBOLS), "initial_capital": 1000}
    for method, path in [
        ("post", f"/api/strategies/{sid}/run"),
        ("post", f"/api/strategies/{sid}/stop"),
        ("get", f"/api/strategies/{sid}/execution"),
        ("get", f"/api/strategies/{sid}/executions"),
        ("get", f"/api/strategies/{sid}/executions/{execution['id']}"),
        ("get", f"/api/strategies/{sid}/logs"),
        ("get", f"/api/strategies/{sid}/signals"),
    ]:
        kwargs = {"json": body} if path.endswith("/run") else {}
        response = getattr(api, method)(path, headers=other.headers, **kwargs)
        assert_error(response, 404, "not_found")
    # Their own strategy does not open a door to someone else's run either.
    theirs = create_strategy(api, other)
    foreign = api.get(
        f"/api/strategies/{theirs}/executions/{execution['id']}", headers=other.headers
    )
    assert_error(foreign, 404, "not_found")
    assert logs(api, other, theirs, execution_id=execution["id"]) == []
    assert _execution(api, owner, sid)["status"] == "running"  # untouched
    unauthenticated = api.get(f"/api/strategies/{sid}/logs")
    assert_error(unauthenticated, 401)


def test_schedule_default_custom_and_invalid(api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    for bad in ["61 * * * *", "every day", "0 0 30 2 *", "0 9 * * 8"]:
        response = api.post(
            f"/api/strategies/{sid}/run",
            headers=owner.headers,
            json={"symbols": list(SYMBOLS), "initial_capital": 1000, "schedule": bad},
        )
        error = assert_error(response, 422, "validation_error")
        assert error["details"]["schedule"], bad
    assert api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()["status"] == (
        "stopped"
    )
    shanghai = ZoneInfo("Asia/Shanghai")
    default = run(api, owner, sid)
    assert default["schedule"] == "30 15 * * 1-5"
    assert default["timezone"] == "Asia/Shanghai"
    tick = dt.datetime.fromisoformat(default["next_run_time"]).astimezone(shanghai)
    assert (tick.hour, tick.minute) == (15, 30)
    assert tick.weekday() < 5  # crontab's 1-5 is Monday to Friday
    api.post(f"/api/strategies/{sid}/stop", headers=owner.headers)
    custom = run(api, owner, sid, schedule="0  9 * *   0")  # crontab's 0: Sunday
    assert custom["schedule"] == "0 9 * * 0"
    tick = dt.datetime.fromisoformat(custom["next_run_time"]).astimezone(shanghai)
    assert (tick.weekday(), tick.hour, tick.minute) == (6, 9, 0)


def test_run_validates_its_body(api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    path = f"/api/strategies/{sid}/run"
    cases = [
        ({"initial_capital": 1000}, "symbols"),
        ({"symbols": [], "initial_capital": 1000}, "symbols"),
        ({"symbols": ["NOPE1"], "initial_capital": 1000}, "symbols"),
        ({"symbols": ["600600.SH", "AAPL"], "initial_capital": 1000}, "symbols"),
        ({"symbols": ["user:my-prices"], "initial_capital": 1000}, "symbols"),
        ({"symbols": list(SYMBOLS)}, "initial_capital"),
        ({"symbols": list(SYMBOLS), "initial_capital": 0}, "initial_capital"),
    ]
    for body, field in cases:
        error = assert_error(api.post(path, headers=owner.headers, json=body), 422)
        assert field in error["details"], (body, error)
    body = {"symbols": list(SYMBOLS), "initial_capital": 1000}
    assert_error(api.post("/api/strategies/999999/run", headers=owner.headers, json=body), 404)
    # Symbols are normalised and de-duplicated.
    execution = run(api, owner, sid, symbols=["sh600600", "600600.SH", "000999"])
    assert execution["symbols"] == ["600600.SH", "000999.SZ"]


def test_logs_and_signals_are_pages(app: Flask, api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    add_bars(db, NEW)
    _step(app, execution["id"])
    everything = logs(api, owner, sid)
    assert len(everything) == 14
    page = api.get(
        f"/api/strategies/{sid}/logs",
        headers=owner.headers,
        query_string={"per_page": 5, "page": 2},
    ).get_json()
    assert page["total"] == 14
    assert page["page"] == 2
    newest_first = [line["id"] for line in reversed(everything)]
    assert [line["id"] for line in page["items"]] == newest_first[5:10]
    assert set(page["items"][0]) == {"id", "execution_id", "time", "level", "message"}
    first_signals = api.get(
        f"/api/strategies/{sid}/signals", headers=owner.headers, query_string={"per_page": 2}
    ).get_json()
    assert first_signals["total"] == 4
    assert {s["bar_date"] for s in first_signals["items"]} == {"2024-02-28"}
    bad = api.get(f"/api/strategies/{sid}/logs", headers=owner.headers, query_string={"level": "x"})
    assert_error(bad, 422)


def test_a_day_a_data_sync_is_still_writing_waits_for_it(app: Flask, api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    sync = SyncRun(provider="test", kind="daily", session_date=NEW[0], status="running")
    db.add(sync)
    db.commit()
    add_bars(db, NEW[:1], symbols=SYMBOLS[:1])  # the sync has written one symbol so far
    _step(app, execution["id"])
    assert _execution(api, owner, sid)["last_bar_date"] == DAYS[-1].isoformat()
    add_bars(db, NEW[:1], symbols=SYMBOLS[1:])
    sync.status = "finished"
    db.commit()
    _step(app, execution["id"])
    stepped = _execution(api, owner, sid)
    assert stepped["last_bar_date"] == NEW[0].isoformat()
    assert {p["symbol"]: p["shares"] for p in stepped["portfolio"]["positions"]} == {
        "600600.SH": 100.0,
        "000999.SZ": 100.0,
    }


def test_a_symbol_without_the_days_bar_is_suspended_when_no_sync_runs(
    app: Flask, api: Api, db: Session
) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    add_bars(db, NEW[:1], symbols=SYMBOLS[:1])  # 000999.SZ does not trade that day
    _step(app, execution["id"])
    stepped = _execution(api, owner, sid)
    assert stepped["last_bar_date"] == NEW[0].isoformat()
    assert [p["symbol"] for p in stepped["portfolio"]["positions"]] == ["600600.SH"]
    warnings = [line["message"] for line in logs(api, owner, sid, level="warning")]
    assert warnings == ["2024-02-27: buy 100 000999.SZ not filled: suspended"]


INITIALIZES = '''"""Counts steps from a state its initialize sets up, once."""

def initialize(ctx):
    ctx.state["started_with"] = len(ctx.universe)
    ctx.state["steps"] = 0

def handle_bar(ctx, data):
    ctx.state["steps"] += 1
'''


def test_initialize_runs_once_in_the_first_step(app: Flask, api: Api, db: Session) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner, code=INITIALIZES)
    first = run(api, owner, sid)
    assert _execution(api, owner, sid)["state"] == {"started_with": len(SYMBOLS), "steps": 1}
    add_bars(db, NEW)
    _step(app, first["id"])
    # The second step goes on from the stored state: initialize did not run again.
    assert _execution(api, owner, sid)["state"] == {"started_with": len(SYMBOLS), "steps": 3}
