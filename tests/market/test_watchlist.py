"""Watchlists: add, list, remove; each user sees and changes only their own."""

from __future__ import annotations

from tests.support import Account, Api, assert_error

W = "/api/data/watchlist"


def symbols(api: Api, account: Account) -> list[str]:
    response = api.get(W, headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return [item["symbol"] for item in response.get_json()["items"]]


def test_add_list_and_remove(api: Api, user: Account) -> None:
    assert symbols(api, user) == []
    added = api.post(W, json={"symbol": "sh600519"}, headers=user.headers)
    assert added.status_code == 201, added.get_json()
    item = added.get_json()
    assert item["symbol"] == "600519.SH"
    assert item["name"].startswith("模拟")
    assert item["last_close"] is not None
    assert item["added_at"].endswith("Z")
    assert api.post(W, json={"symbol": "AAPL"}, headers=user.headers).status_code == 201
    assert symbols(api, user) == ["AAPL", "600519.SH"]  # newest first
    page = api.get(W, headers=user.headers, query_string={"per_page": 1}).get_json()
    assert (page["total"], page["per_page"], len(page["items"])) == (2, 1, 1)
    removed = api.delete(f"{W}/600519.sh", headers=user.headers)
    assert removed.status_code == 204
    assert removed.get_data() == b""
    assert symbols(api, user) == ["AAPL"]


def test_duplicates_unknown_symbols_and_bad_bodies(api: Api, user: Account) -> None:
    assert api.post(W, json={"symbol": "AAPL"}, headers=user.headers).status_code == 201
    assert_error(api.post(W, json={"symbol": "aapl"}, headers=user.headers), 409, "conflict")
    assert_error(api.post(W, json={"symbol": "ZZZZ9"}, headers=user.headers), 404, "not_found")
    error = assert_error(api.post(W, json={}, headers=user.headers), 422)
    assert "symbol" in error["details"]
    error = assert_error(api.post(W, json={"symbol": "x" * 49}, headers=user.headers), 422)
    assert "symbol" in error["details"]
    assert_error(api.post(W, data="symbol=AAPL", headers=user.headers), 415)
    assert_error(api.delete(f"{W}/MSFT", headers=user.headers), 404, "not_found")
    assert_error(api.delete(f"{W}/NOT-A-SYMBOL!", headers=user.headers), 404, "not_found")
    assert symbols(api, user) == ["AAPL"]


def test_another_users_list_is_never_visible(api: Api, user: Account) -> None:
    other = api.logged_in()
    assert api.post(W, json={"symbol": "600036.SH"}, headers=user.headers).status_code == 201
    assert api.post(W, json={"symbol": "MSFT"}, headers=other.headers).status_code == 201
    assert symbols(api, user) == ["600036.SH"]
    assert symbols(api, other) == ["MSFT"]
    # removing what is only on the other list is "not found", and changes nothing
    assert_error(api.delete(f"{W}/600036.SH", headers=other.headers), 404, "not_found")
    assert symbols(api, user) == ["600036.SH"]
    # both may hold the same symbol
    assert api.post(W, json={"symbol": "MSFT"}, headers=user.headers).status_code == 201
    assert api.delete(f"{W}/MSFT", headers=other.headers).status_code == 204
    assert symbols(api, user) == ["MSFT", "600036.SH"]
    assert symbols(api, other) == []


def test_watchlist_needs_a_token(api: Api, user: Account) -> None:
    assert_error(api.get(W), 401)
    assert_error(api.post(W, json={"symbol": "AAPL"}), 401)
    assert_error(api.delete(f"{W}/AAPL"), 401)
