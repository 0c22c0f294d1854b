"""User data sets: a price file becomes `user:<name>`, for its owner's history and backtests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.engine.data import Bars
from quantdesk.errors import NotFound
from quantdesk.extensions import extensions_of
from quantdesk.files.models import UserDataset, UserDatasetBar
from quantdesk.market import service as market
from quantdesk.sandbox.runner import Status, run_backtest
from quantdesk.strategies.templates import template
from tests.files import HEADER, csv_of, price_rows, upload, uploaded, xlsx_of
from tests.support import Account, Api, assert_error


@pytest.fixture
def user(api: Api) -> Account:
    return api.logged_in()


def _history(api: Api, account: Account, symbol: str, query: str = "") -> Any:
    return api.get(f"/api/data/stocks/{symbol}/history?{query}", headers=account.headers)


def _bars_of(rows: list[list[Any]]) -> list[dict[str, Any]]:
    keys = ("open", "high", "low", "close", "volume")
    return [{"date": r[0].isoformat(), **dict(zip(keys, r[1:], strict=True))} for r in rows]


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_price_file_becomes_the_owners_symbol(api: Api, user: Account, kind: str) -> None:
    rows = price_rows(40)
    content = csv_of(rows) if kind == "csv" else xlsx_of(rows)
    created = uploaded(
        api, user, content, f"my prices.{kind}", category="data", dataset="My-Prices"
    )
    assert created["dataset"] == {
        "name": "my-prices",
        "symbol": "user:my-prices",
        "rows": 40,
        "first_date": rows[0][0].isoformat(),
        "last_date": rows[-1][0].isoformat(),
    }
    # The file itself is kept byte for byte, like any other.
    assert api.get(f"/api/files/{created['id']}", headers=user.headers).get_data() == content

    response = _history(api, user, "user:my-prices", "adjust=none&start=2023-01-01")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["symbol"] == "user:my-prices"
    got = [
        {k: b[k] for k in ("date", "open", "high", "low", "close", "volume")} for b in body["bars"]
    ]
    assert got == _bars_of(rows)
    # change_pct against the previous uploaded close; the first bar has no previous close.
    assert body["bars"][0]["change_pct"] is None
    assert body["bars"][1]["change_pct"] == pytest.approx(
        round((rows[1][4] / rows[0][4] - 1) * 100, 4)
    )

    window = _history(api, user, "user:my-prices", "start=2023-01-10&end=2023-01-20&adjust=qfq")
    dates = [b["date"] for b in window.get_json()["bars"]]
    assert dates == [
        r[0].isoformat() for r in rows if "2023-01-10" <= r[0].isoformat() <= "2023-01-20"
    ]
    first = next(i for i, r in enumerate(rows) if r[0].isoformat() == dates[0])
    assert window.get_json()["bars"][0]["change_pct"] is not None  # previous close from before
    assert window.get_json()["bars"][0]["close"] == rows[first][4]

    weekly = _history(api, user, "user:my-prices", "freq=weekly&start=2023-01-01").get_json()
    assert weekly["bars"][-1]["close"] == rows[-1][4]

    stock = api.get("/api/data/stocks/user:my-prices", headers=user.headers).get_json()
    assert stock["symbol"] == "user:my-prices"
    assert stock["market"] == "user"
    assert stock["last_close"] == rows[-1][4]
    assert stock["synthetic"] is False


def test_another_user_cannot_see_or_use_a_data_set(api: Api, user: Account, app: Flask) -> None:
    uploaded(api, user, csv_of(price_rows(10)), "p.csv", category="data", dataset="secret")
    other = api.logged_in()
    assert_error(_history(api, other, "user:secret"), 404, "not_found")
    assert_error(api.get("/api/data/stocks/user:secret", headers=other.headers), 404)
    # The same name is free for them, and means their own series.
    theirs = price_rows(10, start=dt.date(2020, 6, 1))
    uploaded(api, other, csv_of(theirs), "q.csv", category="data", dataset="secret")
    mine = _history(api, user, "user:secret", "adjust=none&start=2000-01-01").get_json()
    their = _history(api, other, "user:secret", "adjust=none&start=2000-01-01").get_json()
    assert mine["bars"][0]["date"] == "2023-01-02"
    assert their["bars"][0]["date"] == "2020-06-01"
    # Services without a user (market-wide callers) never see a data set.
    with app.app_context():
        session = extensions_of(app).db.session
        with pytest.raises(NotFound):
            market.get_stock(session, "user:secret")
        with pytest.raises(NotFound):
            market.load_bars(
                session, symbols=["user:secret"], start=dt.date(2020, 1, 1), end=dt.date(2024, 1, 1)
            )


def test_bad_rows_are_422_naming_the_rows_and_problems(
    api: Api, user: Account, db: Session
) -> None:
    rows: list[list[Any]] = [list(r) for r in price_rows(8)]
    rows[1][2] = rows[1][3] - 1  # row 3: high below low
    rows[3][0] = "02/30/2023"  # row 5: not a date
    rows[4][5] = -5  # row 6: negative volume
    rows[5][1] = "abc"  # row 7: open not a number
    rows[6][0] = rows[0][0]  # row 8: the date of row 2 again
    rows[7][4] = rows[7][2] * 2  # row 9: close above high
    response = upload(api, user, csv_of(rows), "bad.csv", category="data", dataset="bad")
    error = assert_error(response, 422, "validation_error")
    assert error["message"] == "6 rows are invalid: 3, 5, 6, 7, 8, 9."
    problems = {r["row"]: r["problems"] for r in error["details"]["rows"]}
    assert set(problems) == {3, 5, 6, 7, 8, 9}
    assert problems[3] == [f"high {rows[1][2]:g} is below low {rows[1][3]:g}"]
    assert problems[5] == ["date '02/30/2023' is not a date (YYYY-MM-DD)"]
    assert problems[6] == ["volume -5 is not a whole number of shares >= 0"]
    assert problems[7] == ["open 'abc' is not a number"]
    assert problems[8] == [f"date {rows[0][0].isoformat()} repeats row 2"]
    assert problems[9][0].startswith(f"close {rows[7][4]:g} is outside low..high")
    assert error["details"]["file"][0] == f"row 3: {problems[3][0]}"
    assert error["details"]["invalid_rows"] == 6
    # Nothing was kept: no file, no data set, no bars.
    assert api.get("/api/files", headers=user.headers).get_json()["total"] == 0
    assert db.scalar(select(func.count()).select_from(UserDataset)) == 0
    assert_error(_history(api, user, "user:bad"), 404)


def test_xlsx_rows_are_numbered_as_excel_shows_them(api: Api, user: Account) -> None:
    rows: list[list[Any]] = [list(r) for r in price_rows(5)]
    rows[2][4] = None  # row 4: empty close
    rows[3][1] = 0  # row 5: zero open
    content = xlsx_of(rows)
    error = assert_error(upload(api, user, content, "b.xlsx", category="data", dataset="b"), 422)
    assert error["details"]["file"] == ["row 4: close is empty", "row 5: open 0 is not positive"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (csv_of(price_rows(3), header=["date", "open", "high", "low", "close"]), "lacks columns"),
        (csv_of([], header=HEADER), "has no rows"),
        (b"\n\n", "is empty"),
    ],
)
def test_files_without_bars_are_422(api: Api, user: Account, content: bytes, message: str) -> None:
    error = assert_error(upload(api, user, content, "x.csv", category="data", dataset="x"), 422)
    assert message in error["message"]


def test_columns_are_found_by_name_in_any_order_and_case(api: Api, user: Account) -> None:
    rows = price_rows(3)
    header = ["Volume", "Close", "Note", "Low", "High", "Open", "Date"]
    lines = [";".join(header)]
    for d, o, h, low, c, v in rows:
        lines.append(
            ";".join([str(v), str(c), "x", str(low), str(h), str(o), d.strftime("%Y%m%d")])
        )
    content = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()  # Excel's BOM and line ends
    created = uploaded(api, user, content, "x.csv", category="data", dataset="any-order")
    assert created["dataset"]["rows"] == 3
    bars = _history(api, user, "user:any-order", "adjust=none&start=2023-01-01").get_json()["bars"]
    assert [b["close"] for b in bars] == [r[4] for r in rows]


def test_row_limit_and_name_clash(make_app: Any) -> None:
    api = Api(make_app(FILES_DATASET_MAX_ROWS=5))
    user = api.logged_in()
    error = assert_error(
        upload(api, user, csv_of(price_rows(6)), "x.csv", category="data", dataset="big"), 422
    )
    assert error["details"]["file"] == ["At most 5 rows of bars."]
    uploaded(api, user, csv_of(price_rows(5)), "x.csv", category="data", dataset="taken")
    clash = upload(api, user, csv_of(price_rows(4)), "y.csv", category="data", dataset="TAKEN")
    assert "dataset" in assert_error(clash, 409, "conflict")["details"]


def test_deleting_the_file_deletes_the_data_set(api: Api, user: Account, db: Session) -> None:
    created = uploaded(api, user, csv_of(price_rows(12)), "p.csv", category="data", dataset="gone")
    assert _history(api, user, "user:gone", "start=2023-01-01").status_code == 200
    assert db.scalar(select(func.count()).select_from(UserDatasetBar)) == 12
    assert api.delete(f"/api/files/{created['id']}", headers=user.headers).status_code == 204
    assert_error(_history(api, user, "user:gone", "start=2023-01-01"), 404)
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(UserDatasetBar)) == 0
    # The name is free again.
    uploaded(api, user, csv_of(price_rows(3)), "p.csv", category="data", dataset="gone")


def test_a_backtest_runs_on_an_uploaded_data_set(api: Api, user: Account, app: Flask) -> None:
    """The backtest path (load_bars, then the sandbox), as the backtest task runs it."""
    rows = price_rows(260)
    uploaded(api, user, csv_of(rows), "p.csv", category="data", dataset="walk")
    start, end = rows[0][0], rows[-1][0]
    with app.app_context():
        session = extensions_of(app).db.session
        frame, listed = market.load_bars(
            session, symbols=["user:walk"], start=start, end=end, user_id=user.id
        )
        assert listed == {}
        assert list(frame["close"]) == [r[4] for r in rows]
        assert set(frame["symbol"]) == {"user:walk"}
        bars = Bars.from_long(frame, listing_dates=listed)
    chosen = template("dual_moving_average")
    assert chosen is not None
    settings = extensions_of(app).settings
    outcome = run_backtest(
        chosen.code,
        bars,
        {"market": "us", "initial_capital": 100_000, "params": {"fast": 5, "slow": 20}},
        limits=settings.sandbox_limits(),
    )
    assert outcome.status == Status.FINISHED, (outcome.error, outcome.traceback)
    assert outcome.result is not None
    fills = outcome.result["fills"]
    assert len(fills) >= 4  # the walk swings: the crossover trades both ways
    assert {f["symbol"] for f in fills} == {"user:walk"}
    by_date = {r[0].isoformat(): r for r in rows}
    for fill in fills:  # every fill inside its bar's uploaded range
        bar = by_date[str(fill["date"])[:10]]
        assert bar[3] <= fill["price"] <= bar[2]


def test_post_backtests_runs_on_an_uploaded_data_set(api: Api, user: Account) -> None:
    """Through the API: `user:<name>` in a backtest's symbols, for its owner only."""
    rows = price_rows(260)
    uploaded(api, user, csv_of(rows), "p.csv", category="data", dataset="walk")
    created = api.post(
        "/api/strategies",
        headers=user.headers,
        json={"name": "ma", "template": "dual_moving_average", "params": {"fast": 5, "slow": 20}},
    )
    assert created.status_code == 201, created.get_json()
    body = {
        "strategy_id": created.get_json()["id"],
        "symbols": ["user:walk"],
        "start_date": rows[0][0].isoformat(),
        "end_date": rows[-1][0].isoformat(),
        "initial_capital": 100_000,
    }
    response = api.post("/api/backtests", headers=user.headers, json=body)
    assert response.status_code == 202, response.get_json()
    backtest_id = response.get_json()["id"]
    found = api.get(f"/api/backtests/{backtest_id}", headers=user.headers).get_json()
    assert found["status"] == "finished", found  # TASKS_EAGER: it ran inline
    result = api.get(f"/api/backtests/{backtest_id}/result", headers=user.headers).get_json()
    assert {t["symbol"] for t in result["trades"]} == {"user:walk"}
    # Another user's `user:walk` does not exist for them.
    other = api.logged_in()
    mine = api.post(
        "/api/strategies",
        headers=other.headers,
        json={"name": "ma", "template": "dual_moving_average"},
    ).get_json()
    refused = api.post(
        "/api/backtests", headers=other.headers, json={**body, "strategy_id": mine["id"]}
    )
    assert "symbols" in assert_error(refused, 422)["details"]
