"""Every notification endpoint of API.md is in the OpenAPI document, with its schemas."""

from __future__ import annotations

from tests.support import Api


def test_the_notification_endpoints_are_documented(api: Api) -> None:
    spec = api.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    expected = {
        ("/api/notifications", "get"),
        ("/api/notifications/mark-read", "post"),
        ("/api/notifications/{notification_id}", "delete"),
        ("/api/notifications/settings", "get"),
        ("/api/notifications/settings", "put"),
        ("/api/notifications/test", "post"),
        ("/api/notifications/stream", "get"),
        ("/api/notifications/price-alerts", "post"),
    }
    for path, method in expected:
        operation = paths.get(path, {}).get(method)
        assert operation is not None, (path, method)
        assert operation["summary"], (path, method)
        assert operation["security"] == [{"bearerAuth": []}], (path, method)
    stream = paths["/api/notifications/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert {p["name"] for p in stream["parameters"]} >= {"access_token", "Last-Event-ID"}
    settings_put = paths["/api/notifications/settings"]["put"]
    assert "requestBody" in settings_put
    schemas = spec["components"]["schemas"]
    assert {
        "NotificationOut",
        "SettingsOut",
        "SettingsUpdateIn",
        "WebhookIn",
        "SendTestOut",
    } <= set(schemas)
    # Webhook URLs are write-only: the output schema has the masked form only.
    assert "secret" not in schemas["WebhookOut"]["properties"]
