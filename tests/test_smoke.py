from tests.support import Api


def test_register_and_profile(api: Api) -> None:
    account = api.logged_in()
    response = api.get("/api/auth/profile", headers=account.headers)
    assert response.status_code == 200
    assert response.get_json()["username"] == account.username
