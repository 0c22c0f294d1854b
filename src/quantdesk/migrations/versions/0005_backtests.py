"""backtests: tasks, results, trades, equity curve, refusals, logs, grid rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

import quantdesk.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backtest_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy_name", sa.String(length=100), nullable=False),
        sa.Column("symbols", sa.JSON(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("initial_capital", sa.Float(), nullable=False),
        sa.Column("benchmark", sa.String(length=48), nullable=True),
        sa.Column("market", sa.String(length=8), nullable=False),
        sa.Column("adjust", sa.String(length=4), nullable=False),
        sa.Column("fill", sa.String(length=12), nullable=False),
        sa.Column("slippage_bps", sa.Float(), nullable=False),
        sa.Column("costs", sa.JSON(), nullable=False),
        sa.Column("risk_free_rate", sa.Float(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("param_grid", sa.JSON(), nullable=True),
        sa.Column("rank_by", sa.String(length=32), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("strategy_version", sa.Integer(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("rulebook_version", sa.String(length=32), nullable=False),
        sa.Column("engine_version", sa.String(length=40), nullable=False),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("data_start", sa.Date(), nullable=True),
        sa.Column("data_end", sa.Date(), nullable=True),
        sa.Column("bars_count", sa.Integer(), nullable=True),
        sa.Column("reused_from_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(length=20), nullable=True),
        sa.Column("notices", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", quantdesk.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", quantdesk.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["backtest_tasks.id"],
            name=op.f("fk_backtest_tasks_parent_id_backtest_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reused_from_id"],
            ["backtest_tasks.id"],
            name=op.f("fk_backtest_tasks_reused_from_id_backtest_tasks"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_backtest_tasks_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_backtest_tasks_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_tasks")),
    )
    with op.batch_alter_table("backtest_tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_backtest_tasks_parent_id"), ["parent_id"], unique=False
        )
        batch_op.create_index(
            "ix_backtest_tasks_reuse", ["user_id", "request_hash", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_backtest_tasks_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(
            "ix_backtest_tasks_user_created", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "backtest_grid_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grid_id", sa.Integer(), nullable=False),
        sa.Column("backtest_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["backtest_id"],
            ["backtest_tasks.id"],
            name=op.f("fk_backtest_grid_rows_backtest_id_backtest_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["grid_id"],
            ["backtest_tasks.id"],
            name=op.f("fk_backtest_grid_rows_grid_id_backtest_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_grid_rows")),
        sa.UniqueConstraint("grid_id", "position", name="uq_backtest_grid_rows_position"),
    )
    with op.batch_alter_table("backtest_grid_rows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_backtest_grid_rows_backtest_id"), ["backtest_id"], unique=False
        )

    op.create_table(
        "backtest_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("final_value", sa.Float(), nullable=False),
        sa.Column("total_return", sa.Float(), nullable=True),
        sa.Column("annual_return", sa.Float(), nullable=True),
        sa.Column("annual_volatility", sa.Float(), nullable=True),
        sa.Column("sharpe_ratio", sa.Float(), nullable=True),
        sa.Column("sortino_ratio", sa.Float(), nullable=True),
        sa.Column("max_drawdown", sa.Float(), nullable=True),
        sa.Column("max_drawdown_duration", sa.Integer(), nullable=True),
        sa.Column("calmar_ratio", sa.Float(), nullable=True),
        sa.Column("trades_count", sa.Integer(), nullable=False),
        sa.Column("round_trips_count", sa.Integer(), nullable=True),
        sa.Column("win_rate", sa.Float(), nullable=True),
        sa.Column("profit_loss_ratio", sa.Float(), nullable=True),
        sa.Column("benchmark_return", sa.Float(), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=True),
        sa.Column("beta", sa.Float(), nullable=True),
        sa.Column("information_ratio", sa.Float(), nullable=True),
        sa.Column("tracking_error", sa.Float(), nullable=True),
        sa.Column("turnover", sa.Float(), nullable=True),
        sa.Column("total_commission", sa.Float(), nullable=False),
        sa.Column("min_commission_fills", sa.Integer(), nullable=False),
        sa.Column("min_commission_topup", sa.Float(), nullable=False),
        sa.Column("total_stamp_duty", sa.Float(), nullable=False),
        sa.Column("total_transfer_fee", sa.Float(), nullable=False),
        sa.Column("total_slippage", sa.Float(), nullable=False),
        sa.Column("positions", sa.JSON(), nullable=False),
        sa.Column("records", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("prices", sa.JSON(), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["backtest_tasks.id"],
            name=op.f("fk_backtest_results_task_id_backtest_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_results")),
        sa.UniqueConstraint("task_id", name=op.f("uq_backtest_results_task_id")),
    )
    op.create_table(
        "backtest_equity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("benchmark", sa.Float(), nullable=True),
        sa.Column("drawdown", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["backtest_results.id"],
            name=op.f("fk_backtest_equity_result_id_backtest_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_equity")),
        sa.UniqueConstraint("result_id", "date", name="uq_backtest_equity_result_date"),
    )
    op.create_table(
        "backtest_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["backtest_results.id"],
            name=op.f("fk_backtest_logs_result_id_backtest_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_logs")),
    )
    with op.batch_alter_table("backtest_logs", schema=None) as batch_op:
        batch_op.create_index("ix_backtest_logs_result_seq", ["result_id", "seq"], unique=False)

    op.create_table(
        "backtest_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("symbol", sa.String(length=48), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("requested", sa.Float(), nullable=False),
        sa.Column("filled", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["backtest_results.id"],
            name=op.f("fk_backtest_refusals_result_id_backtest_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_refusals")),
    )
    with op.batch_alter_table("backtest_refusals", schema=None) as batch_op:
        batch_op.create_index("ix_backtest_refusals_result_seq", ["result_id", "seq"], unique=False)

    op.create_table(
        "backtest_trades",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=48), nullable=False),
        sa.Column("action", sa.String(length=4), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.Date(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("commission", sa.Float(), nullable=False),
        sa.Column("min_commission_topup", sa.Float(), nullable=False),
        sa.Column("stamp_duty", sa.Float(), nullable=False),
        sa.Column("transfer_fee", sa.Float(), nullable=False),
        sa.Column("slippage", sa.Float(), nullable=False),
        sa.Column("profit_loss", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["backtest_results.id"],
            name=op.f("fk_backtest_trades_result_id_backtest_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_trades")),
    )
    with op.batch_alter_table("backtest_trades", schema=None) as batch_op:
        batch_op.create_index("ix_backtest_trades_result_seq", ["result_id", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("backtest_trades", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_trades_result_seq")

    op.drop_table("backtest_trades")
    with op.batch_alter_table("backtest_refusals", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_refusals_result_seq")

    op.drop_table("backtest_refusals")
    with op.batch_alter_table("backtest_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_logs_result_seq")

    op.drop_table("backtest_logs")
    op.drop_table("backtest_equity")
    op.drop_table("backtest_results")
    with op.batch_alter_table("backtest_grid_rows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backtest_grid_rows_backtest_id"))

    op.drop_table("backtest_grid_rows")
    with op.batch_alter_table("backtest_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_tasks_user_created")
        batch_op.drop_index(batch_op.f("ix_backtest_tasks_strategy_id"))
        batch_op.drop_index("ix_backtest_tasks_reuse")
        batch_op.drop_index(batch_op.f("ix_backtest_tasks_parent_id"))

    op.drop_table("backtest_tasks")
