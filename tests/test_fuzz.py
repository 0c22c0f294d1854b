"""Fuzzing (issue 11, point 5): schemathesis against the app's own `/api/openapi.json`.

Every documented operation is called with generated requests, valid and invalid, as a logged-in
admin (bearer token on every call), on an embedded-backend app with eager tasks and a database
of its own holding the sample market data and one of each of the user's things (a strategy, a
finished backtest, a conversation, a price alert, a notification): about half the requests
address those (known path ids), the rest generated ones; DELETEs run last. Each response must
not be a server error and must match the response documented for its status (the default error
response included). Generation is derandomized, so a run is repeatable; the number of examples
per operation and a time budget bound its length. Webhook hosts never resolve here, so no
request leaves the machine.

Not fuzzed: the server-sent event stream (it never ends), the AI endpoints' `?stream=true`
variant (the same), and logout (it revokes the token the fuzzer uses).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup
from sqlalchemy.orm import Session

from quantdesk import migrate
from quantdesk.app import create_app
from quantdesk.auth import service
from quantdesk.db import build_engine
from quantdesk.extensions import extensions_of
from quantdesk.market import sync
from quantdesk.notifications import netguard
from tests.backtests import make_strategy, start
from tests.conftest import Backend
from tests.support import Account, Api

pytestmark = pytest.mark.slow

EXCLUDED = {
    ("GET", "/api/notifications/stream"),  # server-sent events: the response never ends
    ("POST", "/api/auth/logout"),  # revokes the fuzzer's own token
}
# Generated requests per operation and mode; a budget stops a slow run early (reported).
MAX_EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
BUDGET_SECONDS = 150.0
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def fuzz_app(
    embedded_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    """An embedded app on a database of its own (fuzzing writes freely), no rate limits."""
    settings = embedded_backend.make_settings(
        VAR_DIR=tmp_path, RATELIMIT_ENABLED=False, WEBHOOK_ALLOW_PRIVATE_NETWORKS=False
    )

    def no_network(host: str, port: int) -> list[netguard.IPAddress]:
        raise OSError(f"{host}: no name resolves in the fuzz test")

    monkeypatch.setattr(netguard, "resolve", no_network)
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
        with Session(engine) as session:
            assert sync.seed_demo(session).status == "finished"
    finally:
        engine.dispose()
    app = create_app(settings)
    try:
        yield app
    finally:
        extensions_of(app).db.dispose()


def _known_ids(api: Api, account: Account) -> dict[str, object]:
    """Path parameters naming the user's own things, made through the API."""
    headers = account.headers
    strategy_id = make_strategy(api, account)
    backtest = start(api, account, strategy_id)
    conversation = api.post("/api/ai/conversations", json={}, headers=headers)
    alert = api.post(
        "/api/notifications/price-alerts",
        json={"symbol": "600519.SH", "condition": "above", "threshold": 1700},
        headers=headers,
    )
    assert api.post("/api/notifications/test", json={}, headers=headers).status_code == 200
    inbox = api.get("/api/notifications", headers=headers).get_json()["items"]
    assert conversation.status_code == 201, conversation.get_json()
    assert alert.status_code == 201, alert.get_json()
    assert inbox
    return {
        "strategy_id": strategy_id,
        "version": 1,
        "backtest_id": backtest["id"],
        "conversation_id": conversation.get_json()["id"],
        "alert_id": alert.get_json()["id"],
        "notification_id": inbox[0]["id"],
        "symbol": "600519.SH",
        "user_id": account.id,
    }


def _query_without_stream(case: schemathesis.Case) -> None:
    # The AI endpoints stream (never ending, for a test client) when asked: ask them not to.
    if case.query and "stream" in case.query:
        case.query["stream"] = "false"


@pytest.mark.timeout(300)
def test_fuzz_api(fuzz_app: Flask) -> None:
    api = Api(fuzz_app)
    account = api.register("fuzzer")
    ext = extensions_of(fuzz_app)
    with fuzz_app.app_context(), ext.db.session_scope() as session:
        # An admin, so that the admin endpoints' successful answers are checked too (the
        # service refuses to let it deactivate or demote itself).
        service.ensure_admin(
            session, settings=ext.settings, username="fuzzer", email=account.email, password=None
        )
    logged_in = api.login(account).get_json()
    assert logged_in["user"]["roles"] == ["admin", "user"]
    account.access_token = logged_in["access_token"]
    auth = account.headers
    known = _known_ids(api, account)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")  # stable

    failures: list[str] = []
    skipped: list[str] = []
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for mode, max_examples in MAX_EXAMPLES.items():
            label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
            if time.monotonic() - started > BUDGET_SECONDS:
                skipped.append(label)
                continue
            cases = operation.as_strategy(generation_mode=mode)
            names = set(re.findall(r"{(\w+)}", operation.path))
            if names and names <= set(known):
                fixed = {name: known[name] for name in names}
                cases = st.one_of(
                    operation.as_strategy(generation_mode=mode, path_parameters=fixed), cases
                )

            @hypothesis_settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=cases)
            def call(case: schemathesis.Case) -> None:
                _query_without_stream(case)
                response = case.call(headers=auth)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS, headers=auth)

            try:
                call()
            except (FailureGroup, AssertionError) as exc:
                failures.append(f"{label}: {exc}")
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing (negative) can be generated for this operation

    elapsed = time.monotonic() - started
    calls = sum(statuses.values())
    print(f"fuzz: {calls} calls in {elapsed:.1f}s, statuses {dict(sorted(statuses.items()))}")
    print(f"fuzz: over budget, not run: {skipped or 'none'}")
    assert not failures, "\n\n".join(failures)
