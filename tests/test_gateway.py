"""The gateway and database sections: API-wide rate limits per user and per address, the
connection pool with pre-ping, and the optional read replica of read-only routes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import InternalError
from sqlalchemy.orm import Session

from quantdesk.app import create_app
from quantdesk.auth.models import User
from quantdesk.extensions import Extensions, extensions_of
from quantdesk.market import sync
from quantdesk.strategies.models import Strategy
from tests.backtests import fetch, make_strategy, start
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, Backend
from tests.support import Account, Api, assert_error, free_port

EXEMPT = ("/api/health", "/api/health/ready", "/metrics", "/api/docs", "/api/openapi.json")


def _at(app: Flask, address: str) -> Api:
    """A client whose requests come from `address`."""
    api = Api(app)
    api.client.environ_base["REMOTE_ADDR"] = address
    return api


def _assert_limited(response: object) -> None:
    error = assert_error(response, 429, "rate_limited")  # type: ignore[arg-type]
    retry_after = int(response.headers["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= retry_after <= 60
    assert error["details"] == {"retry_after": retry_after}


# ---------------------------------------------------------------- rate limits


def test_every_endpoint_counts_against_one_limit_per_user(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(API_RATE_LIMIT_PER_USER="4 per minute")
    api = Api(app)
    alice, bob = api.logged_in(), api.logged_in()  # anonymous requests: no user's count

    for path in ("/api/strategies", "/api/backtests", "/api/strategies", "/api/backtests"):
        assert api.get(path, headers=alice.headers).status_code == 200
    _assert_limited(api.get("/api/strategies", headers=alice.headers))
    _assert_limited(api.get("/api/data/stocks", headers=alice.headers))  # any endpoint
    # The user's count, wherever the user comes from.
    _assert_limited(_at(app, "10.1.1.1").get("/api/strategies", headers=alice.headers))

    # Another user, and anonymous requests from the same address, are unaffected.
    assert api.get("/api/strategies", headers=bob.headers).status_code == 200
    assert_error(api.get("/api/strategies"), 401)
    # An invalid token is no user: the view answers 401, not the user's 429.
    assert_error(api.get("/api/strategies", headers={"Authorization": "Bearer nonsense"}), 401)
    # Health, metrics and docs are exempt, even with the limited user's token.
    for path in EXEMPT:
        assert api.get(path, headers=alice.headers).status_code != 429, path


def test_every_endpoint_counts_against_one_limit_per_address(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(API_RATE_LIMIT_PER_ADDRESS="3 per minute")
    first, second = _at(app, "10.0.0.1"), _at(app, "10.0.0.2")

    for _ in range(3):
        assert_error(first.get("/api/strategies"), 401)  # anonymous requests count too
    _assert_limited(first.get("/api/strategies"))
    _assert_limited(first.post("/api/auth/login", json={"username": "x", "password": "y"}))

    # Another address has its own count: register + login + one call, then limited.
    account = second.logged_in()
    assert second.get("/api/backtests", headers=account.headers).status_code == 200
    _assert_limited(second.get("/api/backtests", headers=account.headers))

    # The same user from a third address is served (the per-user limit is high).
    third = _at(app, "10.0.0.3")
    assert third.get("/api/backtests", headers=account.headers).status_code == 200
    for path in EXEMPT:
        assert first.get(path).status_code != 429, path


def test_limits_are_switched_off_with_ratelimit_enabled(make_app: Callable[..., Flask]) -> None:
    api = Api(
        make_app(
            API_RATE_LIMIT_PER_ADDRESS="1 per minute",
            API_RATE_LIMIT_PER_USER="1 per minute",
            RATELIMIT_ENABLED=False,
        )
    )
    account = api.logged_in()
    for _ in range(3):
        assert api.get("/api/strategies", headers=account.headers).status_code == 200


def test_a_limit_that_is_no_limit_fails_fast(backend: Backend) -> None:
    with pytest.raises(ValueError, match="API_RATE_LIMIT_PER_USER"):
        backend.make_settings(API_RATE_LIMIT_PER_USER="lots")


# ---------------------------------------------------------------- pool


def test_a_postgresql_engine_has_the_pool_settings_and_pre_ping(
    production_backend: Backend,
) -> None:
    settings = production_backend.make_settings(
        DB_POOL_SIZE=3, DB_MAX_OVERFLOW=2, DB_POOL_RECYCLE_SECONDS=900
    )
    app = create_app(settings)
    engine = extensions_of(app).db.engine
    try:
        pool = engine.pool
        assert engine.dialect.name == "postgresql"
        assert pool._pre_ping is True
        assert pool.size() == 3
        assert pool._max_overflow == 2
        assert pool._recycle == 900

        # Pre-ping at work: a pooled connection the server dropped is replaced on checkout.
        with engine.connect() as connection:
            dropped = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = create_engine(settings.database_url)
        try:
            with admin.connect() as connection:
                killed = connection.execute(
                    text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}
                ).scalar_one()
            assert killed is True
        finally:
            admin.dispose()
        with engine.connect() as connection:
            fresh = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert fresh != dropped
    finally:
        extensions_of(app).db.dispose()


# ---------------------------------------------------------------- read replica


def test_without_a_replica_reads_use_the_primary_session(app: Flask, ext: Extensions) -> None:
    assert ext.db.replica_engine is None
    with app.app_context():
        assert ext.db.read_session is ext.db.session


@pytest.fixture
def replica_pair(
    production_backend: Backend, scratch_database: Callable[[str], str]
) -> Iterator[tuple[str, str]]:
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()  # no cached history from other tests
    yield scratch_database("gateway_primary"), scratch_database("gateway_replica")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()


def _app(backend: Backend, made: list[Flask], **settings: str) -> Api:
    app = create_app(backend.make_settings(**settings))
    made.append(app)
    return Api(app)


def _names(response: object) -> list[str]:
    assert response.status_code == 200, response.get_json()  # type: ignore[attr-defined]
    return [item["name"] for item in response.get_json()["items"]]  # type: ignore[attr-defined]


def test_read_only_routes_read_the_replica_and_writes_go_to_the_primary(
    production_backend: Backend, replica_pair: tuple[str, str]
) -> None:
    primary_url, replica_url = replica_pair
    made: list[Flask] = []
    engines: list[Engine] = []
    try:
        # The "replica" holds other data than the primary: market bars, a strategy, a backtest.
        replica_engine = create_engine(replica_url)
        primary_engine = create_engine(primary_url)
        engines += [replica_engine, primary_engine]
        with Session(replica_engine) as session:
            assert sync.seed_demo(session).status == "finished"
        on_replica = _app(production_backend, made, DATABASE_URL=replica_url)
        alice = on_replica.logged_in("alice")
        strategy_id = make_strategy(on_replica, alice, name="on the replica")
        backtest_id = start(on_replica, alice, strategy_id)["id"]
        assert fetch(on_replica, alice, backtest_id)["status"] == "finished"
        # The same account on the primary (same id), nothing else there.
        assert _app(production_backend, made, DATABASE_URL=primary_url).register("alice").id == (
            alice.id
        )

        api = _app(
            production_backend, made, DATABASE_URL=primary_url, DATABASE_REPLICA_URL=replica_url
        )
        login = api.login(Account("alice", "", alice.password))
        assert login.status_code == 200, login.get_json()
        user = Account("alice", "", alice.password, access_token=login.get_json()["access_token"])

        # Lists and the report come from the replica ...
        assert _names(api.get("/api/strategies", headers=user.headers)) == ["on the replica"]
        backtests = api.get("/api/backtests", headers=user.headers).get_json()
        assert [item["id"] for item in backtests["items"]] == [backtest_id]
        report = api.get(f"/api/backtests/{backtest_id}/report", headers=user.headers)
        assert report.status_code == 200
        assert report.mimetype == "text/html"
        # ... market history and indicators too: the primary has no instruments at all.
        history = api.get("/api/data/stocks/600519.SH/history", headers=user.headers)
        assert history.status_code == 200, history.get_json()
        assert len(history.get_json()["bars"]) > 100
        indicators = api.get(
            "/api/data/stocks/600519.SH/indicators?names=sma&sma_n=5", headers=user.headers
        )
        assert indicators.status_code == 200, indicators.get_json()
        # Routes not wired to the replica read the primary.
        assert_error(api.get("/api/data/stocks/600519.SH", headers=user.headers), 404)
        assert_error(api.get(f"/api/backtests/{backtest_id}", headers=user.headers), 404)

        # A write goes to the primary only; the replica's list does not see it.
        created = api.post(
            "/api/strategies",
            json={"name": "written", "code": "def handle_bar(ctx, data):\n    pass\n"},
            headers=user.headers,
        )
        assert created.status_code == 201, created.get_json()
        with Session(primary_engine) as session:
            assert session.scalars(select(Strategy.name)).all() == ["written"]
            assert session.scalars(select(User.username)).all() == ["alice"]
        with Session(replica_engine) as session:
            assert session.scalars(select(Strategy.name)).all() == ["on the replica"]
        assert _names(api.get("/api/strategies", headers=user.headers)) == ["on the replica"]
        got = api.get(f"/api/strategies/{created.get_json()['id']}", headers=user.headers)
        assert got.get_json()["name"] == "written"

        # The replica's sessions are read-only transactions: a stray write fails there.
        with api.app.app_context():
            db = extensions_of(api.app).db
            assert db.read_session is not db.session
            with pytest.raises(InternalError, match="read-only transaction"):
                db.read_session.execute(text("DELETE FROM strategies"))
    finally:
        for app in made:
            extensions_of(app).db.dispose()
        for engine in engines:
            engine.dispose()


def test_readiness_covers_the_replica(production_backend: Backend) -> None:
    """A replica that answers is "ok"; one that does not makes the process not ready (503),
    since the read-only routes would fail on it."""
    made: list[Flask] = []
    try:
        up = _app(production_backend, made, DATABASE_REPLICA_URL=TEST_DATABASE_URL)
        response = up.get("/api/health/ready")
        assert response.status_code == 200
        assert response.get_json()["checks"]["database_replica"] == "ok"
        gone = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/replica"
        down = _app(production_backend, made, DATABASE_REPLICA_URL=gone)
        error = assert_error(down.get("/api/health/ready"), 503, "service_unavailable")
        assert error["details"]["checks"]["database_replica"] == "unavailable"
        assert error["details"]["checks"]["database"] == "ok"
    finally:
        for app in made:
            extensions_of(app).db.dispose()
