"""Every domain's models, imported in one place so the metadata is complete (Alembic, tests)."""

from quantdesk.auth import models as auth_models
from quantdesk.db import Base
from quantdesk.mail import OutboxEmail
from quantdesk.market import models as market_models
from quantdesk.notifications import models as notification_models
from quantdesk.strategies import models as strategy_models

metadata = Base.metadata

__all__ = [
    "Base",
    "OutboxEmail",
    "auth_models",
    "market_models",
    "metadata",
    "notification_models",
    "strategy_models",
]
