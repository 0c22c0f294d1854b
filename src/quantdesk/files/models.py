"""File tables: categories, uploaded files, and the user data sets made from price files.

A file row holds what the upload was (owner, names, sniffed content type, size, sha256) and
where its bytes are (`storage_key`, a random UUID: never derived from the user's file name).
A data set is a price file turned into bars under the symbol `user:<name>`, one owner's only;
it lives as long as the file it came from.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from quantdesk.db import Base, UTCDateTime, utcnow
from quantdesk.market.models import BigId


class FileCategory(Base):
    """A kind of file (strategy, data, report, avatar, other); seeded by the migration.

    Which file types each category accepts is code (`files.types.ALLOWED`): it comes with the
    content checks that enforce it.
    """

    __tablename__ = "file_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)
    description: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FileRecord(Base):
    __tablename__ = "file_records"
    __table_args__ = (Index("ix_file_records_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    category_id: Mapped[int] = mapped_column(ForeignKey("file_categories.id"))
    # The name as the client sent it (control characters removed), and the safe display name
    # used in Content-Disposition; neither is ever part of a path or a storage key.
    original_name: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))  # from the content, not the client
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    category: Mapped[FileCategory] = relationship(lazy="joined")
    dataset: Mapped[UserDataset | None] = relationship(
        back_populates="file", lazy="selectin", cascade="all, delete-orphan", passive_deletes=True
    )


class UserDataset(Base):
    """A user's own instrument `user:<name>`, made from an uploaded CSV or XLSX price file."""

    __tablename__ = "user_datasets"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_user_datasets_user_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    file_id: Mapped[int] = mapped_column(
        ForeignKey("file_records.id", ondelete="CASCADE"), unique=True
    )
    name: Mapped[str] = mapped_column(String(40))  # the symbol is "user:" + name
    rows: Mapped[int]
    first_date: Mapped[dt.date] = mapped_column(Date)
    last_date: Mapped[dt.date] = mapped_column(Date)
    last_close: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    file: Mapped[FileRecord] = relationship(back_populates="dataset")

    @property
    def symbol(self) -> str:
        return f"user:{self.name}"


class UserDatasetBar(Base):
    """One daily bar of a user data set, as uploaded (no adjustment, no limits, no flags)."""

    __tablename__ = "user_dataset_bars"
    __table_args__ = (
        UniqueConstraint("dataset_id", "date", name="uq_user_dataset_bars_dataset_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("user_datasets.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[int] = mapped_column(BigInteger)
