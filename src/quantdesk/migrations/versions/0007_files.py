"""files: categories (seeded), uploaded files, user data sets and their bars

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import datetime

import sqlalchemy as sa
from alembic import op

import quantdesk.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_categories")),
        sa.UniqueConstraint("name", name=op.f("uq_file_categories_name")),
    )
    op.create_table(
        "file_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["file_categories.id"],
            name=op.f("fk_file_records_category_id_file_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_file_records_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_records")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_file_records_storage_key")),
    )
    with op.batch_alter_table("file_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_file_records_user_created", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "user_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.Column("last_close", sa.Float(), nullable=False),
        sa.Column("created_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", quantdesk.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["file_records.id"],
            name=op.f("fk_user_datasets_file_id_file_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_datasets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_datasets")),
        sa.UniqueConstraint("file_id", name=op.f("uq_user_datasets_file_id")),
        sa.UniqueConstraint("user_id", "name", name="uq_user_datasets_user_name"),
    )
    op.create_table(
        "user_dataset_bars",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["user_datasets.id"],
            name=op.f("fk_user_dataset_bars_dataset_id_user_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_dataset_bars")),
        sa.UniqueConstraint("dataset_id", "date", name="uq_user_dataset_bars_dataset_date"),
    )
    _seed_categories()


def _seed_categories() -> None:
    categories = sa.table(
        "file_categories",
        sa.column("name", sa.String),
        sa.column("description", sa.String),
        sa.column("created_at", quantdesk.db.UTCDateTime()),
    )
    now = datetime.datetime.now(datetime.UTC)
    op.bulk_insert(
        categories,
        [
            {"name": name, "description": description, "created_at": now}
            for name, description in (
                ("strategy", "Strategy code (.py) that can become a strategy"),
                ("data", "Price data (.csv, .xlsx); with a data set name, the symbol user:<name>"),
                ("report", "Reports (.html, .pdf)"),
                ("avatar", "Profile pictures (.png, .jpg)"),
                ("other", "Any of the accepted types"),
            )
        ],
    )


def downgrade() -> None:
    op.drop_table("user_dataset_bars")
    op.drop_table("user_datasets")
    with op.batch_alter_table("file_records", schema=None) as batch_op:
        batch_op.drop_index("ix_file_records_user_created")

    op.drop_table("file_records")
    op.drop_table("file_categories")
