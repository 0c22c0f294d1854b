"""The history sent with a message is trimmed to AI_HISTORY_TOKEN_BUDGET (estimated offline),
newest first, never splitting a tool call from its results."""

from __future__ import annotations

from collections.abc import Callable

from quantdesk.ai.chat import estimate_tokens, history_window
from quantdesk.ai.models import Message, Role
from tests.ai.conftest import Online
from tests.ai.llm_server import text


def test_tokens_are_estimated_without_a_tokenizer() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a" * 100) == 30  # 0.3 per ASCII character
    assert estimate_tokens("贵州茅台" * 10) == 24  # 0.6 per other character
    assert estimate_tokens("MACD 金叉") == 3  # ceil(0.3 * 5 + 0.6 * 2)


def test_history_is_trimmed_to_the_token_budget(online: Callable[..., Online]) -> None:
    o = online(AI_HISTORY_TOKEN_BUDGET=250)
    o.llm.default = text("Noted.")
    conversation_id = o.conversation()
    questions = [f"Question {n}: " + "tell me more about momentum " * 9 for n in range(6)]
    for question in questions:
        response = o.send(conversation_id, question)
        assert response.status_code == 200
    body = response.get_json()
    context = body["context"]
    assert context["token_budget"] == 250
    assert 0 < context["history_tokens"] <= 250
    assert context["trimmed_messages"] > 0
    assert context["history_messages"] + context["trimmed_messages"] == 10  # 5 earlier turns
    sent = o.llm.bodies()[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert sent[-1] == {"role": "user", "content": questions[-1]}
    history = sent[1:-1]
    assert len(history) == context["history_messages"]
    assert history[-1] == {"role": "assistant", "content": "Noted."}
    assert history[-2] == {"role": "user", "content": questions[-2]}
    assert all(m["content"] != questions[0] for m in sent)  # the oldest were left out
    # The first message of a conversation went out with no history at all.
    assert [m["role"] for m in o.llm.bodies()[0]["messages"]] == ["system", "user"]


def _message(role: Role, tokens: int, **values: object) -> Message:
    return Message(role=role, content="x", tokens=tokens, **values)


def test_a_tool_exchange_is_kept_or_left_out_whole() -> None:
    call = {"id": "c1", "name": "get_stock", "arguments": "{}"}
    messages = [
        _message(Role.USER, 10),
        _message(Role.ASSISTANT, 10, tool_calls=[call, {**call, "id": "c2"}]),
        _message(Role.TOOL, 40, tool_call_id="c1"),
        _message(Role.TOOL, 40, tool_call_id="c2"),
        _message(Role.ASSISTANT, 10),
        _message(Role.USER, 10),
        _message(Role.ASSISTANT, 10),
    ]
    window, trimmed = history_window(messages, budget=100)
    # The newest three messages cost 30; the call with its two results (90) does not fit in
    # the 70 left, so the whole group goes, not just one of its results.
    assert [m.role for m in window] == ["assistant", "user", "assistant"]
    assert trimmed == 4
    window, trimmed = history_window(messages, budget=120)
    assert [m.role for m in window] == [
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert trimmed == 1
    assert history_window(messages, budget=5) == ([], 7)
