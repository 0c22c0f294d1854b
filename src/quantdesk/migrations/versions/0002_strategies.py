"""strategies, versions, executions, logs and signals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import quantdesk.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "strategies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=20), nullable=False),
        sa.Column("api", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=True),
        sa.Column("risk_level", sa.String(length=20), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_strategies_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
    )
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.create_index("ix_strategies_user_updated", ["user_id", "updated_at"], unique=False)

    op.create_table(
        "strategy_executions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("start_time", quantdesk.db.UTCDateTime(), nullable=False),
        sa.Column("end_time", quantdesk.db.UTCDateTime(), nullable=True),
        sa.Column("profit_loss", sa.Float(), nullable=False),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("portfolio", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("last_step_at", quantdesk.db.UTCDateTime(), nullable=True),
        sa.Column("last_bar_date", sa.Date(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_strategy_executions_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_executions")),
    )
    with op.batch_alter_table("strategy_executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_strategy_executions_strategy_status", ["strategy_id", "status"], unique=False
        )

    op.create_table(
        "strategy_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("changelog", sa.Text(), nullable=True),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_strategy_versions_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_versions")),
        sa.UniqueConstraint(
            "strategy_id", "version", name=op.f("uq_strategy_versions_strategy_id")
        ),
    )
    op.create_table(
        "execution_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=False),
        sa.Column("time", quantdesk.db.UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["strategy_executions.id"],
            name=op.f("fk_execution_logs_execution_id_strategy_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_logs")),
    )
    with op.batch_alter_table("execution_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_execution_logs_execution_id_id", ["execution_id", "id"], unique=False
        )

    op.create_table(
        "strategy_signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=False),
        sa.Column("bar_date", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("shares", sa.Float(), nullable=False),
        sa.Column("reference_price", sa.Float(), nullable=True),
        sa.Column("message", sa.String(length=255), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["strategy_executions.id"],
            name=op.f("fk_strategy_signals_execution_id_strategy_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_signals")),
    )
    with op.batch_alter_table("strategy_signals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_strategy_signals_execution_id_id", ["execution_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("strategy_signals", schema=None) as batch_op:
        batch_op.drop_index("ix_strategy_signals_execution_id_id")

    op.drop_table("strategy_signals")
    with op.batch_alter_table("execution_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_execution_logs_execution_id_id")

    op.drop_table("execution_logs")
    op.drop_table("strategy_versions")
    with op.batch_alter_table("strategy_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_strategy_executions_strategy_status")

    op.drop_table("strategy_executions")
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.drop_index("ix_strategies_user_updated")

    op.drop_table("strategies")
