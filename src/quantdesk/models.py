"""Every domain's models, imported in one place so the metadata is complete (Alembic, tests)."""

from quantdesk.ai import models as ai_models
from quantdesk.auth import models as auth_models
from quantdesk.backtests import models as backtest_models
from quantdesk.db import Base
from quantdesk.files import models as file_models
from quantdesk.mail import OutboxEmail
from quantdesk.market import models as market_models
from quantdesk.notifications import models as notification_models
from quantdesk.scheduler import scheduler_jobs
from quantdesk.strategies import models as strategy_models

metadata = Base.metadata

__all__ = [
    "Base",
    "OutboxEmail",
    "ai_models",
    "auth_models",
    "backtest_models",
    "file_models",
    "market_models",
    "metadata",
    "notification_models",
    "scheduler_jobs",
    "strategy_models",
]
