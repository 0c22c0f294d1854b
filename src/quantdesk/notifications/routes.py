"""Notification endpoints (API.md "Notifications", plus price alerts): thin views over services."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_smorest import Api

from quantdesk.auth.tokens import current_user, login_required
from quantdesk.errors import Invalid
from quantdesk.extensions import current_extensions
from quantdesk.notifications import alerts, preferences, service
from quantdesk.notifications.schemas import (
    DeliveryListOut,
    MarkReadIn,
    MarkReadOut,
    NotificationListArgs,
    NotificationOut,
    PriceAlertIn,
    PriceAlertListArgs,
    PriceAlertOut,
    PriceAlertUpdateIn,
    SendTestIn,
    SendTestOut,
    SettingsOut,
    SettingsUpdateIn,
    UnreadCountOut,
)
from quantdesk.notifications.stream import EventStream
from quantdesk.openapi import BEARER, ApiBlueprint
from quantdesk.ratelimit import rate_limited
from quantdesk.schemas import page_of, paginate
from quantdesk.web import requires_json

blp = ApiBlueprint(
    "notifications",
    __name__,
    url_prefix="/api/notifications",
    description="In-app, email and webhook notifications, their settings, a live stream",
)


@blp.get("")
@login_required()
@blp.arguments(NotificationListArgs, location="query")
@blp.response(200, page_of(NotificationOut))
@blp.doc(security=BEARER)
def list_notifications(args: dict[str, Any]) -> Any:
    """The inbox, newest first; `unread=true` for unread ones only."""
    session = current_extensions().db.session
    stmt = service.list_notifications(
        session, user=current_user(), unread=args.get("unread"), event=args.get("event")
    )
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/unread-count")
@login_required()
@blp.response(200, UnreadCountOut)
@blp.doc(security=BEARER)
def unread_count() -> Any:
    """How many inbox notifications are unread (for a badge)."""
    return {"unread": service.unread_count(current_extensions().db.session, user=current_user())}


@blp.post("/mark-read")
@login_required()
@requires_json
@blp.arguments(MarkReadIn)
@blp.response(200, MarkReadOut)
@blp.doc(security=BEARER)
def mark_read(body: dict[str, Any]) -> Any:
    """Mark `{ids: [...]}` or `{all: true}` read."""
    updated, unread = service.mark_read(
        current_extensions().db.session,
        user=current_user(),
        ids=body.get("ids"),
        everything=bool(body.get("all")),
    )
    return {"updated": updated, "unread": unread}


@blp.get("/<int:notification_id>")
@login_required()
@blp.response(200, NotificationOut)
@blp.doc(security=BEARER)
def get_notification(notification_id: int) -> Any:
    """One notification of the inbox."""
    return service.get_notification(
        current_extensions().db.session, user=current_user(), notification_id=notification_id
    )


@blp.delete("/<int:notification_id>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def delete_notification(notification_id: int) -> None:
    """Delete a notification from the inbox (with its delivery log)."""
    service.delete_notification(
        current_extensions().db.session, user=current_user(), notification_id=notification_id
    )


@blp.get("/<int:notification_id>/deliveries")
@login_required()
@blp.response(200, DeliveryListOut)
@blp.doc(security=BEARER)
def list_deliveries(notification_id: int) -> Any:
    """The delivery log of a notification: every attempt per channel, with its outcome."""
    items = service.list_deliveries(
        current_extensions().db.session, user=current_user(), notification_id=notification_id
    )
    return {"items": items}


@blp.get("/settings")
@login_required()
@blp.response(200, SettingsOut)
@blp.doc(security=BEARER)
def get_settings() -> Any:
    """Each event on each channel, the email address, webhooks (URLs masked, secrets never)."""
    return preferences.get_preferences(current_extensions().db.session, user=current_user())


@blp.put("/settings")
@login_required()
@requires_json
@blp.arguments(SettingsUpdateIn)
@blp.response(200, SettingsOut)
@blp.doc(security=BEARER)
def update_settings(body: dict[str, Any]) -> Any:
    """Change `email`, `events` (only what changes) or `webhooks` (the whole list)."""
    ext = current_extensions()
    return preferences.update_preferences(
        ext.db.session, settings=ext.settings, user=current_user(), changes=body
    )


@blp.post("/test")
@rate_limited("NOTIFY_TEST_RATE_LIMIT")
@login_required()
@requires_json
@blp.arguments(SendTestIn)
@blp.response(200, SendTestOut)
@blp.doc(security=BEARER)
def send_test(body: dict[str, Any]) -> Any:
    """Send a test message through each channel enabled for `test`; the outcome per channel."""
    ext = current_extensions()
    notification, results = service.send_test(
        ext.db.session, runtime=ext, user=current_user(), message=body.get("message")
    )
    return {
        "notification_id": notification.id,
        "results": [
            {
                "channel": target.channel.value,
                "target": target.label,
                "webhook_id": target.webhook_id,
                "outcome": result.outcome.value,
                "status_code": result.status_code,
                "error": result.error,
            }
            for target, result in results
        ],
    }


@blp.get("/stream")
@login_required(query_token=True)
@blp.doc(
    security=BEARER,
    parameters=[
        {
            "in": "query",
            "name": "access_token",
            "schema": {"type": "string"},
            "description": "the access token, for EventSource (which cannot send headers)",
        },
        {
            "in": "header",
            "name": "Last-Event-ID",
            "schema": {"type": "integer"},
            "description": "resume: notifications after this id are sent first",
        },
    ],
    responses={
        "200": {
            "description": "text/event-stream: `event: notification`, `id:` and `data:` with "
            "a notification's JSON, one per new notification; `: keep-alive` comments",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
def stream() -> Response:
    """Server-sent events: one per new notification, until NOTIFY_STREAM_MAX_SECONDS."""
    ext = current_extensions()
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or ""
    if raw and not raw.isdigit():
        raise Invalid("Last-Event-ID must be a notification id.", details={"last_event_id": [raw]})
    user = current_user()
    events = EventStream(
        ext.pubsub,
        user_id=user.id,
        replay=service.replay_since(ext.db.session, user=user, last_id=int(raw)) if raw else [],
        keepalive_seconds=ext.settings.NOTIFY_STREAM_KEEPALIVE_SECONDS,
        max_seconds=ext.settings.NOTIFY_STREAM_MAX_SECONDS,
    )
    ext.db.session.close()  # the stream may last minutes: give the connection back now
    return Response(
        events,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@blp.get("/price-alerts")
@login_required()
@blp.arguments(PriceAlertListArgs, location="query")
@blp.response(200, page_of(PriceAlertOut))
@blp.doc(security=BEARER)
def list_price_alerts(args: dict[str, Any]) -> Any:
    """Own price alerts, newest first; `symbol` filters."""
    session = current_extensions().db.session
    stmt = alerts.list_alerts(session, user=current_user(), symbol=args.get("symbol"))
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.post("/price-alerts")
@login_required()
@requires_json
@blp.arguments(PriceAlertIn)
@blp.response(201, PriceAlertOut)
@blp.doc(security=BEARER)
def create_price_alert(body: dict[str, Any]) -> Any:
    """Alert when a symbol's daily close crosses a price or moves a percentage in a day."""
    return alerts.create_alert(current_extensions().db.session, user=current_user(), **body)


@blp.put("/price-alerts/<int:alert_id>")
@login_required()
@requires_json
@blp.arguments(PriceAlertUpdateIn)
@blp.response(200, PriceAlertOut)
@blp.doc(security=BEARER)
def update_price_alert(body: dict[str, Any], alert_id: int) -> Any:
    """Change an alert's condition, threshold, note, or turn it off and on."""
    return alerts.update_alert(
        current_extensions().db.session, user=current_user(), alert_id=alert_id, changes=body
    )


@blp.delete("/price-alerts/<int:alert_id>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def delete_price_alert(alert_id: int) -> None:
    """Delete a price alert."""
    alerts.delete_alert(current_extensions().db.session, user=current_user(), alert_id=alert_id)


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
