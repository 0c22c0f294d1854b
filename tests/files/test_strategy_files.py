"""A `.py` uploaded as a strategy file becomes a strategy in one call, or a 422 with violations."""

from __future__ import annotations

import pytest

from tests.files import STRATEGY, csv_of, price_rows, uploaded
from tests.support import Account, Api, assert_error


@pytest.fixture
def user(api: Api) -> Account:
    return api.logged_in()


def test_a_strategy_file_becomes_a_strategy(api: Api, user: Account) -> None:
    created = uploaded(api, user, STRATEGY, "../buy and hold.py", category="strategy")
    response = api.post(f"/api/files/{created['id']}/strategy", headers=user.headers)
    assert response.status_code == 201, response.get_json()
    strategy = response.get_json()
    assert strategy["name"] == "buy and hold"
    assert strategy["code"] == STRATEGY.decode()
    assert strategy["params"] == {"weight": 0.9}
    assert strategy["api"] == "event"
    assert strategy["version"] == 1
    stored = api.get(f"/api/strategies/{strategy['id']}", headers=user.headers).get_json()
    assert stored["code"] == STRATEGY.decode()
    versions = api.get(f"/api/strategies/{strategy['id']}/versions", headers=user.headers)
    assert versions.get_json()["items"][0]["changelog"] == "Created from the file buy and hold.py"

    named = api.post(
        f"/api/files/{created['id']}/strategy",
        json={"name": "Hold forever", "description": "from my laptop"},
        headers=user.headers,
    )
    assert named.status_code == 201
    assert named.get_json()["name"] == "Hold forever"
    assert named.get_json()["description"] == "from my laptop"


def test_code_that_breaks_the_sandbox_rules_is_422_with_violations(api: Api, user: Account) -> None:
    code = b"import os\n\n\ndef handle_bar(ctx, data):\n    os.system('id')\n"
    created = uploaded(api, user, code, "evil.py", category="strategy")  # valid Python
    response = api.post(f"/api/files/{created['id']}/strategy", json={}, headers=user.headers)
    error = assert_error(response, 422, "validation_error")
    violations = error["details"]["violations"]
    assert violations[0]["line"] == 1
    assert "os" in violations[0]["message"]
    assert api.get("/api/strategies", headers=user.headers).get_json()["total"] == 0


def test_only_strategy_files_become_strategies(api: Api, user: Account) -> None:
    other = uploaded(api, user, STRATEGY, "s.py")  # a .py, but in the category other
    response = api.post(f"/api/files/{other['id']}/strategy", json={}, headers=user.headers)
    assert "file_id" in assert_error(response, 422)["details"]
    data = uploaded(api, user, csv_of(price_rows(3)), "p.csv", category="data")
    response = api.post(f"/api/files/{data['id']}/strategy", json={}, headers=user.headers)
    assert_error(response, 422)
    response = api.post(
        f"/api/files/{other['id']}/strategy", data="name=x", headers=user.headers,
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip
    assert_error(response, 415, "unsupported_media_type")
