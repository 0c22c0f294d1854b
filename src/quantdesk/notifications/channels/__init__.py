"""The channels, each behind `Sender.send(attempt) -> Result`; the registry the manager uses."""

from __future__ import annotations

from quantdesk.notifications.channels.base import Sender
from quantdesk.notifications.channels.email import EmailChannel
from quantdesk.notifications.channels.in_app import InAppChannel
from quantdesk.notifications.channels.webhook import WebhookChannel
from quantdesk.notifications.events import Channel

SENDERS: dict[Channel, Sender] = {
    Channel.IN_APP: InAppChannel(),
    Channel.EMAIL: EmailChannel(),
    Channel.WEBHOOK: WebhookChannel(),
}
