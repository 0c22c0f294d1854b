"""Strategy management through the HTTP API: CRUD, versions, copy, validation, ownership."""

from __future__ import annotations

import pytest

from quantdesk.strategies.templates import templates
from tests.support import Account, Api, assert_error

GOOD = '''"""Buy and hold."""
PARAMS = {"weight": 0.5, "window": 20}

def handle_bar(ctx, data):
    for symbol in ctx.universe:
        ctx.order_target_percent(symbol, ctx.params["weight"])
'''

VECTOR = """PARAMS = {"weight": 0.5}

def target_weights(data, params):
    return data.close * 0 + params["weight"]
"""


def _create(api: Api, account: Account, **fields: object) -> dict:
    body = {"name": "Hold", "code": GOOD, **fields}
    response = api.post("/api/strategies", headers=account.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_and_read_back(api: Api) -> None:
    owner = api.logged_in()
    created = _create(api, owner, description="half in", category="trend", risk_level="low")
    assert created["version"] == 1
    assert created["api"] == "event"
    assert created["status"] == "stopped"
    assert created["language"] == "python"
    assert created["params"] == {"weight": 0.5, "window": 20}
    fetched = api.get(f"/api/strategies/{created['id']}", headers=owner.headers).get_json()
    assert fetched["code"] == GOOD
    assert fetched["category"] == "trend"


def test_params_override_the_code_defaults_and_unknown_keys_are_422(api: Api) -> None:
    owner = api.logged_in()
    created = _create(api, owner, params={"weight": 0.25})
    assert created["params"] == {"weight": 0.25, "window": 20}
    response = api.post(
        "/api/strategies",
        headers=owner.headers,
        json={"name": "x", "code": GOOD, "params": {"wieght": 1}},
    )
    error = assert_error(response, 422, "validation_error")
    assert "wieght" in error["details"]["params"][0]


def test_saving_code_that_fails_the_check_is_422_with_violations(api: Api) -> None:
    owner = api.logged_in()
    bad = "import os\n\ndef handle_bar(ctx, data):\n    os.system('rm -rf /')\n"
    response = api.post("/api/strategies", headers=owner.headers, json={"name": "x", "code": bad})
    error = assert_error(response, 422, "validation_error")
    violations = error["details"]["violations"]
    assert violations[0] == {
        "line": 1,
        "col": 0,
        "message": "import of 'os' is not allowed; allowed: math, statistics, datetime, numpy, "
        "pandas, indicators",
    }
    assert error["details"]["code"][0].startswith("line 1, col 0: import of 'os'")
    listing = api.get("/api/strategies", headers=owner.headers).get_json()
    assert listing["total"] == 0  # nothing was saved


def test_every_code_change_stores_a_new_version(api: Api) -> None:
    owner = api.logged_in()
    created = _create(api, owner)
    sid = created["id"]
    v2 = GOOD.replace("0.5", "0.6")
    updated = api.put(
        f"/api/strategies/{sid}", headers=owner.headers, json={"code": v2, "changelog": "more"}
    ).get_json()
    assert updated["version"] == 2
    assert updated["params"]["weight"] == 0.6
    renamed = api.put(f"/api/strategies/{sid}", headers=owner.headers, json={"name": "Renamed"})
    assert renamed.get_json()["version"] == 2  # a rename is not a new version
    v3 = api.put(f"/api/strategies/{sid}", headers=owner.headers, json={"code": VECTOR})
    assert v3.get_json()["version"] == 3
    assert v3.get_json()["api"] == "vectorized"
    versions = api.get(f"/api/strategies/{sid}/versions", headers=owner.headers).get_json()
    assert [v["version"] for v in versions["items"]] == [3, 2, 1]
    assert versions["items"][1]["changelog"] == "more"
    assert "code" not in versions["items"][0]
    first = api.get(f"/api/strategies/{sid}/versions/1", headers=owner.headers).get_json()
    assert first["code"] == GOOD
    assert first["params"] == {"weight": 0.5, "window": 20}
    assert_error(api.get(f"/api/strategies/{sid}/versions/9", headers=owner.headers), 404)


def test_update_refuses_bad_code_and_keeps_the_old(api: Api) -> None:
    owner = api.logged_in()
    sid = _create(api, owner)["id"]
    response = api.put(
        f"/api/strategies/{sid}", headers=owner.headers, json={"code": "x = eval('1')"}
    )
    assert_error(response, 422)
    kept = api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()
    assert kept["code"] == GOOD
    assert kept["version"] == 1


def test_copy_is_independent_with_its_own_history(api: Api) -> None:
    owner = api.logged_in()
    sid = _create(api, owner)["id"]
    api.put(f"/api/strategies/{sid}", headers=owner.headers, json={"code": GOOD + "\n"})
    copy = api.post(f"/api/strategies/{sid}/copy", headers=owner.headers)
    assert copy.status_code == 201, copy.get_json()
    copied = copy.get_json()
    assert copied["id"] != sid
    assert copied["name"] == "Copy of Hold"
    assert copied["version"] == 1
    assert copied["code"] == GOOD + "\n"
    api.put(f"/api/strategies/{copied['id']}", headers=owner.headers, json={"code": VECTOR})
    original = api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()
    assert original["code"] == GOOD + "\n"
    history = api.get(f"/api/strategies/{copied['id']}/versions", headers=owner.headers)
    assert history.get_json()["total"] == 2
    named = api.post(
        f"/api/strategies/{sid}/copy", headers=owner.headers, json={"name": "Mine too"}
    )
    assert named.get_json()["name"] == "Mine too"


def test_list_filters_sorts_and_pages(api: Api) -> None:
    owner = api.logged_in()
    _create(api, owner, name="Alpha trend", category="trend")
    _create(api, owner, name="Beta revert", category="mean_reversion")
    _create(api, owner, name="Gamma trend", category="trend", description="slow")
    trend = api.get("/api/strategies?category=trend&sort=name", headers=owner.headers).get_json()
    assert [s["name"] for s in trend["items"]] == ["Alpha trend", "Gamma trend"]
    assert "code" not in trend["items"][0]
    found = api.get("/api/strategies?q=SLOW", headers=owner.headers).get_json()
    assert [s["name"] for s in found["items"]] == ["Gamma trend"]
    paged = api.get("/api/strategies?per_page=2&page=2&sort=name", headers=owner.headers)
    assert paged.get_json()["total"] == 3
    assert [s["name"] for s in paged.get_json()["items"]] == ["Gamma trend"]
    assert_error(api.get("/api/strategies?status=flying", headers=owner.headers), 422)
    assert_error(api.get("/api/strategies?sort=code", headers=owner.headers), 422)


def test_delete(api: Api) -> None:
    owner = api.logged_in()
    sid = _create(api, owner)["id"]
    assert api.delete(f"/api/strategies/{sid}", headers=owner.headers).status_code == 204
    assert_error(api.get(f"/api/strategies/{sid}", headers=owner.headers), 404)
    assert_error(api.get(f"/api/strategies/{sid}/versions", headers=owner.headers), 404)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("put", ""),
        ("delete", ""),
        ("post", "/copy"),
        ("get", "/versions"),
        ("get", "/versions/1"),
    ],
)
def test_another_users_strategy_is_404(api: Api, method: str, suffix: str) -> None:
    owner, other = api.logged_in(), api.logged_in()
    sid = _create(api, owner)["id"]
    kwargs: dict = {"headers": other.headers}
    if method == "put":
        kwargs["json"] = {"name": "stolen"}
    response = getattr(api, method)(f"/api/strategies/{sid}{suffix}", **kwargs)
    assert_error(response, 404, "not_found")
    assert api.get("/api/strategies", headers=other.headers).get_json()["total"] == 0
    assert api.get(f"/api/strategies/{sid}", headers=owner.headers).get_json()["name"] == "Hold"


def test_validate_reports_api_params_and_violations(api: Api) -> None:
    owner = api.logged_in()
    ok = api.post("/api/strategies/validate", headers=owner.headers, json={"code": VECTOR})
    assert ok.get_json() == {
        "valid": True,
        "api": "vectorized",
        "violations": [],
        "params": {"weight": 0.5},
    }
    bad = api.post(
        "/api/strategies/validate",
        headers=owner.headers,
        json={"code": "import socket\n\ndef handle_bar(ctx, data):\n    x = ().__class__\n"},
    ).get_json()
    assert bad["valid"] is False
    assert bad["api"] == "event"
    assert [(v["line"], v["col"]) for v in bad["violations"]] == [(1, 0), (4, 8)]
    assert_error(api.post("/api/strategies/validate", json={"code": "x"}), 401)


def test_templates_list_and_create_from_one(api: Api) -> None:
    owner = api.logged_in()
    listed = api.get("/api/strategies/templates", headers=owner.headers).get_json()["items"]
    assert len(listed) >= 6
    assert {t["api"] for t in listed} == {"event", "vectorized"}
    assert {t["slug"] for t in listed} >= {
        "dual_moving_average",
        "macd_trend",
        "rsi_mean_reversion",
        "bollinger_breakout",
        "momentum_rotation",
        "equal_weight_monthly",
    }
    created = api.post(
        "/api/strategies",
        headers=owner.headers,
        json={"name": "My MACD", "template": "macd_trend", "params": {"fast": 8}},
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["params"]["fast"] == 8
    assert body["code"] == next(t.code for t in templates() if t.slug == "macd_trend")
    unknown = api.post(
        "/api/strategies", headers=owner.headers, json={"name": "x", "template": "nope"}
    )
    assert "template" in assert_error(unknown, 422)["details"]
    neither = api.post("/api/strategies", headers=owner.headers, json={"name": "x"})
    assert "code" in assert_error(neither, 422)["details"]


def test_user_overrides_survive_a_code_change(api: Api) -> None:
    owner = api.logged_in()
    sid = _create(api, owner, params={"window": 60})["id"]
    new_code = GOOD.replace('"weight": 0.5', '"weight": 0.7')
    updated = api.put(f"/api/strategies/{sid}", headers=owner.headers, json={"code": new_code})
    # The code's new default comes through; the user's own override stays.
    assert updated.get_json()["params"] == {"weight": 0.7, "window": 60}
