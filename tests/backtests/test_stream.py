"""A real finished backtest reaches the user's live notification stream (issue 8, point 7)."""

from __future__ import annotations

from tests.backtests import make_strategy, start
from tests.notifications.test_stream import blocks, open_stream
from tests.support import Account, Api


def test_a_finished_backtest_arrives_on_the_stream(api: Api, user: Account) -> None:
    response = open_stream(api, headers=user.headers)
    assert response.status_code == 200
    events = blocks(response.response)
    assert next(events).comments == ["connected"]
    created = start(api, user, make_strategy(api, user))  # runs inline: TASKS_EAGER
    event = next(events)
    response.close()
    payload = event.json
    assert event.fields["event"] == "notification"
    assert payload["event"] == "backtest_finished"
    assert payload["data"]["backtest_id"] == created["id"]
