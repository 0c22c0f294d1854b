"""Market fixtures: the sample data seeded once per backend, an empty cache and a user per test."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from quantdesk.db import build_engine
from quantdesk.extensions import extensions_of
from quantdesk.market import sync
from tests.conftest import Backend
from tests.support import Account, Api

_seeded: set[str] = set()


@pytest.fixture(scope="session")
def market_data(backend: Backend) -> Backend:
    """The sample provider's bars, committed once into the backend's database.

    Each test still runs in its own rolled-back transaction, so what it writes disappears;
    the seed itself stays for the whole session (loading it takes one to two seconds).
    """
    if backend.name not in _seeded:
        engine = build_engine(backend.settings)
        try:
            with Session(engine) as session:
                result = sync.seed_demo(session)
                assert result.status == "finished", result.failures
        finally:
            engine.dispose()
        _seeded.add(backend.name)
    return backend


@pytest.fixture(autouse=True)
def _empty_cache(request: pytest.FixtureRequest) -> None:
    """The embedded app's SimpleCache outlives a test's rolled-back rows: start each test clean."""
    if "app" in request.fixturenames:
        request.getfixturevalue("market_data")  # seed before the test's transaction begins
        app = request.getfixturevalue("app")
        with app.app_context():
            extensions_of(app).cache.clear()


@pytest.fixture
def user(market_data: Backend, api: Api) -> Account:
    return api.logged_in()
