"""Every domain's models, imported in one place so the metadata is complete (Alembic, tests)."""

from quantdesk.auth import models as auth_models
from quantdesk.db import Base
from quantdesk.mail import OutboxEmail
from quantdesk.strategies import models as strategy_models

metadata = Base.metadata

__all__ = ["Base", "OutboxEmail", "auth_models", "metadata", "strategy_models"]
