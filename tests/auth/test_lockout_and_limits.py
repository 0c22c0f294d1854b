"""Lock-out after 5 failed log-ins in 15 minutes, and the per-address limit on auth endpoints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import time_machine
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.auth.models import AuditEvent, LoginAttempt
from tests.support import Api, assert_error

WRONG = "not the password"


def _fail(api: Api, username: str):
    return api.post("/api/auth/login", json={"username": username, "password": WRONG})


def test_five_failures_lock_the_account_for_15_minutes(api: Api, db: Session) -> None:
    account = api.register()
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(4):
            assert_error(_fail(api, account.username), 401)
            clock.shift(dt.timedelta(seconds=30))
        assert_error(_fail(api, account.username), 401)  # the 5th failure locks
        # Now even the right password is refused, with the wait in Retry-After.
        locked = api.login(account)
        error = assert_error(locked, 429, "rate_limited")
        assert locked.headers["Retry-After"] == "900"
        assert error["details"]["retry_after"] == 900
        clock.shift(dt.timedelta(minutes=10))
        locked = api.login(account)
        assert_error(locked, 429)
        assert locked.headers["Retry-After"] == "300"
        clock.shift(dt.timedelta(minutes=5, seconds=1))
        assert api.login(account).status_code == 200
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == account.id)).all()
    assert "account_locked" in events
    assert "login_locked" in events
    # Attempts while locked are not recorded, so they cannot extend the lock.
    failures = db.scalars(
        select(LoginAttempt).where(
            LoginAttempt.user_id == account.id, LoginAttempt.success.is_(False)
        )
    ).all()
    assert len(failures) == 5


def test_failures_spread_over_more_than_15_minutes_do_not_lock(api: Api) -> None:
    account = api.register()
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        for _ in range(6):
            assert_error(_fail(api, account.username), 401)
            clock.shift(dt.timedelta(minutes=4))
        assert api.login(account).status_code == 200


def test_a_success_resets_the_failure_count(api: Api) -> None:
    account = api.register()
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        for _ in range(4):
            _fail(api, account.username)
            clock.shift(dt.timedelta(seconds=1))
        assert api.login(account).status_code == 200
        clock.shift(dt.timedelta(seconds=1))
        for _ in range(4):
            assert_error(_fail(api, account.username), 401)
            clock.shift(dt.timedelta(seconds=1))
        assert api.login(account).status_code == 200


def test_lockout_is_per_account(api: Api) -> None:
    victim, bystander = api.register(), api.register()
    for _ in range(5):
        _fail(api, victim.username)
    assert_error(api.login(victim), 429)
    assert api.login(bystander).status_code == 200


def test_auth_endpoints_are_rate_limited_per_address(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(AUTH_RATE_LIMIT="3 per minute"))
    bodies = [{"username": "ghost", "password": WRONG}] * 3
    for body in bodies:
        assert api.post("/api/auth/login", json=body).status_code == 401
    limited = api.post("/api/auth/login", json=bodies[0])
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another address has its own budget.
    other = api.client.post(
        "/api/auth/login", json=bodies[0], environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert other.status_code == 401
    # Authenticated endpoints outside the auth limit are unaffected.
    assert api.get("/api/health").status_code == 200


def test_register_is_rate_limited_too(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(AUTH_RATE_LIMIT="2 per minute"))
    api.register()
    api.register()
    response = api.post(
        "/api/auth/register",
        json={"username": "third", "email": "third@example.com", "password": "long enough pw"},
    )
    assert_error(response, 429)
