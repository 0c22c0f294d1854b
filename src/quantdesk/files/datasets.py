"""User data sets: a CSV or XLSX price file becomes the owner's own symbol `user:<name>`.

Parsing refuses the whole file with the row numbers (as a spreadsheet shows them: the header
is row 1) and what is wrong in each row. The market service reads the stored bars through
`instrument` and `bar_rows` for the owner only, so another user's data set is a 404.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from quantdesk.errors import Conflict, Invalid, NotFound
from quantdesk.files.models import UserDataset, UserDatasetBar
from quantdesk.files.types import Kind
from quantdesk.market.models import Stock

COLUMNS = ("date", "open", "high", "low", "close", "volume")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # the name part of market.symbols.USER_SET
SHOWN_ROWS = 100  # rows named in one refusal; the count says how many more there are
_MAX_VOLUME = 2**63 - 1


@dataclass(frozen=True)
class Bar:
    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int


def dataset_name(raw: str) -> str:
    """The data set name as stored (lower case), or 422: 1-40 of a-z 0-9 _ -."""
    name = raw.strip().lower()
    if name.startswith("user:"):
        name = name[5:]
    if not NAME.fullmatch(name):
        raise Invalid(
            "Invalid data set name.",
            details={
                "dataset": [
                    "1 to 40 characters: letters a-z, digits, '_' or '-', starting with a "
                    "letter or digit; the symbol becomes user:<name>."
                ]
            },
        )
    return name


# ---------------------------------------------------------------- parsing


def parse(stream: BinaryIO, kind: Kind, *, max_rows: int) -> list[Bar]:
    """The bars of a price file, sorted by date; 422 naming every bad row (up to SHOWN_ROWS)."""
    stream.seek(0)
    rows = _xlsx_rows(stream, max_rows + 2) if kind is Kind.XLSX else _csv_rows(stream)
    header_at, index = _header(rows)
    bars: list[Bar] = []
    problems: dict[int, list[str]] = {}
    seen: dict[dt.date, int] = {}
    for number, cells in rows:
        if all(_blank(c) for c in cells):
            continue
        if len(bars) + len(problems) >= max_rows:
            raise Invalid(
                "The data set has too many rows.",
                details={"file": [f"At most {max_rows} rows of bars."]},
            )
        bar, wrong = _bar([cells[i] if i < len(cells) else None for i in index])
        if bar is not None and bar.date in seen:
            wrong.append(f"date {bar.date.isoformat()} repeats row {seen[bar.date]}")
        if wrong:
            problems[number] = wrong
        elif bar is not None:
            seen[bar.date] = number
            bars.append(bar)
    if problems:
        raise _bad_rows(problems)
    if not bars:
        raise Invalid(
            "The data set has no rows.",
            details={"file": [f"No bars below the header (row {header_at})."]},
        )
    return sorted(bars, key=lambda b: b.date)


def _bad_rows(problems: dict[int, list[str]]) -> Invalid:
    numbers = sorted(problems)
    shown = numbers[:SHOWN_ROWS]
    listed = ", ".join(str(n) for n in shown) + (" ..." if len(numbers) > len(shown) else "")
    noun = "row is" if len(numbers) == 1 else "rows are"
    return Invalid(
        f"{len(numbers)} {noun} invalid: {listed}.",
        details={
            "file": [f"row {n}: {'; '.join(problems[n])}" for n in shown],
            "rows": [{"row": n, "problems": problems[n]} for n in shown],
            "invalid_rows": len(numbers),
        },
    )


def _header(rows: Iterator[tuple[int, list[Any]]]) -> tuple[int, list[int]]:
    """The header row's number and the positions of COLUMNS in it; 422 naming missing ones."""
    for number, cells in rows:
        if all(_blank(c) for c in cells):
            continue
        names = [str(c).strip().lower() if c is not None else "" for c in cells]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise Invalid(
                "The data set lacks columns.",
                details={
                    "file": [
                        f"The header (row {number}) needs the columns {', '.join(COLUMNS)}; "
                        f"missing: {', '.join(missing)}."
                    ]
                },
            )
        return number, [names.index(c) for c in COLUMNS]
    raise Invalid("The data set is empty.", details={"file": ["No header row."]})


def _csv_rows(stream: BinaryIO) -> Iterator[tuple[int, list[Any]]]:
    # The bytes were checked as UTF-8 on upload; the BOM Excel writes is dropped.
    text = stream.read().decode("utf-8-sig")
    first = text[: text.find("\n")] if "\n" in text else text
    delimiter = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for number, cells in enumerate(reader, start=1):
            yield number, list(cells)
    except csv.Error as exc:
        raise Invalid(
            "The CSV file cannot be read.",
            details={"file": [f"row {reader.line_num}: {exc}"]},
        ) from None


def _xlsx_rows(stream: BinaryIO, cap: int) -> Iterator[tuple[int, list[Any]]]:
    """The first sheet's rows, read eagerly (warnings filters must not outlive the read) and
    only up to `cap` non-blank rows: enough for `parse` to see that there are too many."""
    from openpyxl import load_workbook

    rows: list[tuple[int, list[Any]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions it skips
        try:
            book = load_workbook(stream, read_only=True, data_only=True)
            try:
                if not book.worksheets:
                    raise Invalid("The workbook has no sheet.", details={"file": ["No sheet."]})
                filled = 0
                for number, cells in enumerate(book.worksheets[0].iter_rows(values_only=True), 1):
                    if filled >= cap:
                        break
                    if not all(_blank(c) for c in cells):
                        filled += 1
                        rows.append((number, list(cells)))
            finally:
                book.close()
        except Invalid:
            raise
        except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
            raise Invalid(
                "The workbook cannot be read.", details={"file": [type(exc).__name__]}
            ) from None
    return iter(rows)


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _bar(cells: list[Any]) -> tuple[Bar | None, list[str]]:
    wrong: list[str] = []
    day = _date(cells[0], wrong)
    prices = [
        _price(name, cell, wrong) for name, cell in zip(COLUMNS[1:5], cells[1:5], strict=True)
    ]
    volume = _volume(cells[5], wrong)
    if day is None or volume is None or any(p is None for p in prices):
        return None, wrong
    o, h, low, c = (float(p) for p in prices if p is not None)
    if h < low:
        wrong.append(f"high {_num(h)} is below low {_num(low)}")
    else:
        if not low <= o <= h:
            wrong.append(f"open {_num(o)} is outside low..high ({_num(low)}..{_num(h)})")
        if not low <= c <= h:
            wrong.append(f"close {_num(c)} is outside low..high ({_num(low)}..{_num(h)})")
    return (None if wrong else Bar(day, o, h, low, c, volume)), wrong


def _num(value: float) -> str:
    return f"{value:g}"


def _date(cell: Any, wrong: list[str]) -> dt.date | None:
    if isinstance(cell, dt.datetime):
        return cell.date()
    if isinstance(cell, dt.date):
        return cell
    text = "" if cell is None else str(cell).strip()
    if not text:
        wrong.append("date is empty")
        return None
    candidate = text
    if len(text) == 8 and text.isdigit():  # 20240102
        candidate = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    elif len(text) > 10 and text[10] in " T":  # 2024-01-02 00:00:00
        candidate = text[:10]
    try:
        return dt.date.fromisoformat(candidate.replace("/", "-"))
    except ValueError:
        wrong.append(f"date {text[:40]!r} is not a date (YYYY-MM-DD)")
        return None


def _number(name: str, cell: Any, wrong: list[str]) -> float | None:
    if isinstance(cell, bool):
        wrong.append(f"{name} is not a number")
        return None
    if isinstance(cell, int | float):
        value = float(cell)
    else:
        text = "" if cell is None else str(cell).strip()
        if not text:
            wrong.append(f"{name} is empty")
            return None
        try:
            value = float(text)
        except ValueError:
            wrong.append(f"{name} {text[:40]!r} is not a number")
            return None
    if not math.isfinite(value):
        wrong.append(f"{name} is not a finite number")
        return None
    return value


def _price(name: str, cell: Any, wrong: list[str]) -> float | None:
    value = _number(name, cell, wrong)
    if value is not None and value <= 0:
        wrong.append(f"{name} {_num(value)} is not positive")
        return None
    return value


def _volume(cell: Any, wrong: list[str]) -> int | None:
    value = _number("volume", cell, wrong)
    if value is None:
        return None
    if value < 0 or not value.is_integer() or value > _MAX_VOLUME:
        wrong.append(f"volume {_num(value)} is not a whole number of shares >= 0")
        return None
    return int(value)


# ---------------------------------------------------------------- storing and reading


def ensure_free(session: Session, *, user_id: int, name: str) -> None:
    taken = session.scalar(
        select(UserDataset.id).where(UserDataset.user_id == user_id, UserDataset.name == name)
    )
    if taken is not None:
        raise Conflict(
            f"You have a data set named {name} already: delete its file first.",
            details={"dataset": [f"user:{name} exists."]},
        )


def store(
    session: Session, *, user_id: int, file_id: int, name: str, bars: list[Bar]
) -> UserDataset:
    """Add the data set and its bars to the session (the caller commits)."""
    dataset = UserDataset(
        user_id=user_id,
        file_id=file_id,
        name=name,
        rows=len(bars),
        first_date=bars[0].date,
        last_date=bars[-1].date,
        last_close=bars[-1].close,
    )
    session.add(dataset)
    session.flush()
    session.execute(
        insert(UserDatasetBar),
        [
            {
                "dataset_id": dataset.id,
                "date": b.date,
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
            }
            for b in bars
        ],
    )
    return dataset


def find(session: Session, symbol: str, user_id: int | None) -> UserDataset:
    """The data set behind `user:<name>` of this user; NotFound for anyone else (or nobody)."""
    found = None
    if user_id is not None:
        found = session.scalar(
            select(UserDataset).where(
                UserDataset.user_id == user_id, UserDataset.name == symbol.removeprefix("user:")
            )
        )
    if found is None:
        raise NotFound(f"No instrument {symbol!r}.", details={"symbol": symbol})
    return found


def instrument(session: Session, symbol: str, user_id: int | None) -> Stock:
    """A user data set seen as an instrument: a Stock row that is never added to the session."""
    dataset = find(session, symbol, user_id)
    return Stock(
        symbol=dataset.symbol,
        name=dataset.name,
        exchange="USER",
        board="user",
        market="user",
        kind="stock",
        sector=None,
        industry=None,
        market_cap=None,
        currency="",
        listed_on=None,
        is_st=False,
        source="upload",
        first_date=dataset.first_date,
        last_date=dataset.last_date,
        last_close=dataset.last_close,
        change=None,
        change_pct=None,
        created_at=dataset.created_at,
        updated_at=dataset.updated_at,
    )


def bar_rows(
    session: Session,
    symbol: str,
    *,
    user_id: int | None,
    start: dt.date | None,
    end: dt.date | None,
) -> list[tuple[Any, ...]]:
    """Bars in the market service's column order (date, open, high, low, close, volume, amount,
    adj_factor, prev_close, suspended, is_st): no amount, factor 1, the previous close as the
    reference price, never suspended or ST."""
    dataset = find(session, symbol, user_id)
    columns = (
        UserDatasetBar.date,
        UserDatasetBar.open,
        UserDatasetBar.high,
        UserDatasetBar.low,
        UserDatasetBar.close,
        UserDatasetBar.volume,
    )
    stmt = select(*columns).where(UserDatasetBar.dataset_id == dataset.id)
    previous = None
    if start is not None:
        stmt = stmt.where(UserDatasetBar.date >= start)
        previous = session.scalar(
            select(UserDatasetBar.close)
            .where(UserDatasetBar.dataset_id == dataset.id, UserDatasetBar.date < start)
            .order_by(UserDatasetBar.date.desc())
            .limit(1)
        )
    if end is not None:
        stmt = stmt.where(UserDatasetBar.date <= end)
    out = []
    for day, o, h, low, c, volume in session.execute(stmt.order_by(UserDatasetBar.date)):
        out.append((day, o, h, low, c, volume, None, 1.0, previous, False, False))
        previous = c
    return out
