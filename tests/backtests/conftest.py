"""Backtest fixtures: the sample market data (seeded once per backend) and a logged-in user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from quantdesk.extensions import Extensions
from quantdesk.tasks import task_name
from tests.conftest import Backend
from tests.market.conftest import market_data
from tests.support import Account, Api

__all__ = ["market_data"]


@pytest.fixture(autouse=True)
def _seed_before_the_test_transaction(request: pytest.FixtureRequest) -> None:
    """Seed (committed, once) before `app` opens the test's rolled-back transaction."""
    if "app" in request.fixturenames:
        request.getfixturevalue("market_data")


@pytest.fixture
def user(market_data: Backend, api: Api) -> Account:
    return api.logged_in()


class HeldRunner:
    """A task runner that keeps what it is given until the test runs it (like a queue)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.held: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> None:
        task_name(fn)
        self.held.append((fn, args))

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        with self.app.app_context():
            fn(*args)

    def run_all(self) -> None:
        held, self.held = self.held, []
        for fn, args in held:
            self.run(fn, *args)

    def shutdown(self) -> None:
        return None


@pytest.fixture
def held(app: Flask, ext: Extensions, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldRunner]:
    runner = HeldRunner(app)
    monkeypatch.setattr(ext, "tasks", runner)
    return runner
