"""Paper-trading background tasks: one step of one run, and the steps after the daily data sync."""

from __future__ import annotations

import logging

from sqlalchemy import select

from quantdesk.extensions import current_extensions
from quantdesk.strategies.models import StrategyExecution, StrategyStatus
from quantdesk.strategies.step import perform_step
from quantdesk.tasks import background_task

log = logging.getLogger(__name__)


@background_task
def paper_step(execution_id: int) -> None:
    """Step a running execution if a bar arrived since its last step (safe to run twice)."""
    ext = current_extensions()
    with ext.db.session_scope() as session:
        outcome = perform_step(
            session, execution_id=execution_id, settings=ext.settings, runtime=ext
        )
    log.info(
        "paper step of execution %s: %s (bar %s, %s signals)",
        execution_id,
        outcome.status,
        outcome.bar_date,
        outcome.signals,
    )


@background_task
def daily_sync_then_steps() -> None:
    """The daily market-data sync, then a step of every running run, so new bars are used now.

    The default paper schedule ticks at the sync's own time (15:30), usually before the day's
    bars are stored; those ticks find nothing new, and these steps take the day once it is in.
    """
    from quantdesk.market.tasks import daily_sync

    ext = current_extensions()
    try:
        daily_sync()
    finally:
        with ext.db.session_scope() as session:
            running = session.scalars(
                select(StrategyExecution.id).where(
                    StrategyExecution.status == StrategyStatus.RUNNING
                )
            ).all()
        for execution_id in running:
            ext.tasks.submit(paper_step, execution_id)
