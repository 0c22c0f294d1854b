"""Notification request and response schemas, named by direction (In, Out, Args)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from quantdesk.notifications.events import Channel, Event, Outcome, WebhookKind
from quantdesk.schemas import ID_RANGE, PageArgs, UTCDateTime

EVENTS = [event.value for event in Event]
CHANNELS = [channel.value for channel in Channel]
CONDITIONS = ["above", "below", "rise_pct", "fall_pct"]
MAX_WEBHOOKS = 10


class NotificationOut(Schema):
    id = fields.Integer(required=True)
    event = fields.String(required=True, metadata={"description": f"one of {', '.join(EVENTS)}"})
    title = fields.String(required=True)
    content = fields.String(required=True, metadata={"description": "plain text"})
    data = fields.Dict(required=True, metadata={"description": "the event's own fields"})
    is_read = fields.Boolean(required=True)
    read_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime(required=True)


class NotificationListArgs(PageArgs):
    unread = fields.Boolean(metadata={"description": "true: only unread ones"})
    event = fields.String(validate=validate.OneOf(EVENTS))


class MarkReadIn(Schema):
    """`{ids: [...]}` marks those (others' ids are ignored); `{all: true}` marks every one."""

    ids = fields.List(
        fields.Integer(strict=True, validate=ID_RANGE),
        validate=validate.Length(min=1, max=1000),
    )
    all = fields.Boolean()

    @validates_schema
    def _one_form(self, data: dict[str, Any], **_: Any) -> None:
        if ("ids" in data) == bool(data.get("all")):
            raise ValidationError("Send either {ids: [...]} or {all: true}.", "_schema")


class MarkReadOut(Schema):
    updated = fields.Integer(required=True, metadata={"description": "notifications marked now"})
    unread = fields.Integer(required=True, metadata={"description": "unread ones left"})


class UnreadCountOut(Schema):
    unread = fields.Integer(required=True)


class DeliveryOut(Schema):
    id = fields.Integer(required=True)
    channel = fields.String(required=True)
    target = fields.String(required=True, metadata={"description": "masked"})
    webhook_id = fields.Integer(allow_none=True)
    attempt = fields.Integer(required=True)
    outcome = fields.String(required=True, metadata={"description": ", ".join(Outcome)})
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = UTCDateTime(required=True)


class DeliveryListOut(Schema):
    items = fields.List(fields.Nested(DeliveryOut), required=True)


class WebhookOut(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    name = fields.String(required=True)
    url = fields.String(
        required=True, attribute="url_hint", metadata={"description": "masked: host and tail"}
    )
    has_secret = fields.Boolean(required=True)
    enabled = fields.Boolean(required=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


class WebhookIn(Schema):
    """A new webhook (no `id`: `kind` and `url` required) or a change of a stored one (`id`).

    Omit `url` or `secret` to keep the stored one; `secret: null` (or "") removes the secret.
    """

    id = fields.Integer(strict=True, validate=ID_RANGE)
    kind = fields.String(validate=validate.OneOf([kind.value for kind in WebhookKind]))
    name = fields.String(validate=validate.Length(min=1, max=100))
    url = fields.String(validate=validate.Length(min=1, max=2000))
    secret = fields.String(allow_none=True, validate=validate.Length(max=300))
    enabled = fields.Boolean()

    @validates_schema
    def _new_needs_kind_and_url(self, data: dict[str, Any], **_: Any) -> None:
        if "id" not in data:
            for name in ("kind", "url"):
                if name not in data:
                    raise ValidationError("Required for a new webhook.", name)


_MATRIX = fields.Dict(
    keys=fields.String(validate=validate.OneOf(EVENTS)),
    values=fields.Dict(
        keys=fields.String(validate=validate.OneOf(CHANNELS)), values=fields.Boolean()
    ),
)


class SettingsOut(Schema):
    email = fields.String(
        allow_none=True, metadata={"description": "where email goes; null: the account's email"}
    )
    effective_email = fields.String(required=True)
    language = fields.String(required=True, metadata={"description": "from the profile"})
    events = fields.Dict(
        required=True,
        metadata={"description": "{event: {channel: on}} for every event and channel"},
    )
    webhooks = fields.List(fields.Nested(WebhookOut), required=True)


class SettingsUpdateIn(Schema):
    """Any of: `email`, `events` (merged: name only what changes), `webhooks` (the whole list:
    stored ones left out are deleted)."""

    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    events = _MATRIX
    webhooks = fields.List(fields.Nested(WebhookIn), validate=validate.Length(max=MAX_WEBHOOKS))


class SendTestIn(Schema):
    message = fields.String(validate=validate.Length(min=1, max=500))


class ChannelResultOut(Schema):
    channel = fields.String(required=True)
    target = fields.String(required=True)
    webhook_id = fields.Integer(allow_none=True)
    outcome = fields.String(required=True)
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class SendTestOut(Schema):
    notification_id = fields.Integer(required=True)
    results = fields.List(fields.Nested(ChannelResultOut), required=True)


class PriceAlertOut(Schema):
    id = fields.Integer(required=True)
    symbol = fields.String(required=True)
    condition = fields.String(required=True, metadata={"description": ", ".join(CONDITIONS)})
    threshold = fields.Float(required=True)
    note = fields.String(allow_none=True)
    is_active = fields.Boolean(required=True)
    last_triggered_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


_THRESHOLD = validate.Range(min=0, min_inclusive=False, max=1e12)


class PriceAlertIn(Schema):
    """above / below: the daily close crosses `threshold` (a price); rise_pct / fall_pct: the
    day's change is at least `threshold` percent."""

    symbol = fields.String(required=True, validate=validate.Length(min=1, max=48))
    condition = fields.String(required=True, validate=validate.OneOf(CONDITIONS))
    threshold = fields.Float(required=True, allow_nan=False, validate=_THRESHOLD)
    note = fields.String(allow_none=True, validate=validate.Length(max=200))
    is_active = fields.Boolean(load_default=True)


class PriceAlertUpdateIn(Schema):
    condition = fields.String(validate=validate.OneOf(CONDITIONS))
    threshold = fields.Float(allow_nan=False, validate=_THRESHOLD)
    note = fields.String(allow_none=True, validate=validate.Length(max=200))
    is_active = fields.Boolean()


class PriceAlertListArgs(PageArgs):
    symbol = fields.String(validate=validate.Length(min=1, max=48))
