"""File types: what each category accepts, recognised by name and by content, and safe names.

A file is of the type its extension names only if its bytes agree: magic bytes for PNG, JPEG,
PDF and XLSX (a zip holding a workbook), valid UTF-8 text without NUL for the text types, and a
`.py` must also parse as Python (it is parsed, never run). The client's Content-Type is never
believed; the stored one comes from here.
"""

from __future__ import annotations

import ast
import codecs
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from quantdesk.errors import Invalid, UnsupportedMediaType

CHUNK = 64 * 1024
MAX_NAME = 200  # characters of a display name, extension included
# A workbook's parts may unpack to at most this much: a 16 MB zip bomb stays a small refusal.
MAX_XLSX_UNPACKED = 256 * 1024 * 1024


class Kind(StrEnum):
    PY = "py"
    CSV = "csv"
    XLSX = "xlsx"
    HTML = "html"
    PDF = "pdf"
    PNG = "png"
    JPG = "jpg"
    TXT = "txt"
    JSON = "json"


class Category(StrEnum):
    STRATEGY = "strategy"
    DATA = "data"
    REPORT = "report"
    AVATAR = "avatar"
    OTHER = "other"


@dataclass(frozen=True)
class FileType:
    kind: Kind
    extensions: tuple[str, ...]
    content_type: str
    magic: bytes = b""  # the bytes a binary type starts with
    text: bool = False  # UTF-8 text without NUL characters


TYPES: dict[Kind, FileType] = {
    t.kind: t
    for t in (
        FileType(Kind.PY, (".py",), "text/x-python; charset=utf-8", text=True),
        FileType(Kind.CSV, (".csv",), "text/csv; charset=utf-8", text=True),
        FileType(
            Kind.XLSX,
            (".xlsx",),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            magic=b"PK\x03\x04",
        ),
        FileType(Kind.HTML, (".html", ".htm"), "text/html; charset=utf-8", text=True),
        FileType(Kind.PDF, (".pdf",), "application/pdf", magic=b"%PDF-"),
        FileType(Kind.PNG, (".png",), "image/png", magic=b"\x89PNG\r\n\x1a\n"),
        FileType(Kind.JPG, (".jpg", ".jpeg"), "image/jpeg", magic=b"\xff\xd8\xff"),
        FileType(Kind.TXT, (".txt",), "text/plain; charset=utf-8", text=True),
        FileType(Kind.JSON, (".json",), "application/json", text=True),
    )
}
_BY_EXTENSION = {ext: t for t in TYPES.values() for ext in t.extensions}

ALLOWED: dict[str, tuple[Kind, ...]] = {
    Category.STRATEGY: (Kind.PY,),
    Category.DATA: (Kind.CSV, Kind.XLSX),
    Category.REPORT: (Kind.HTML, Kind.PDF),
    Category.AVATAR: (Kind.PNG, Kind.JPG),
    Category.OTHER: tuple(Kind),
}


def allowed_kinds(category: str) -> tuple[Kind, ...]:
    """The kinds a category accepts; a category the code does not know takes what `other` does."""
    return ALLOWED.get(category, ALLOWED[Category.OTHER])


def extensions_of(category: str) -> list[str]:
    return [ext for kind in allowed_kinds(category) for ext in TYPES[kind].extensions]


# ---------------------------------------------------------------- names

_UNSAFE = re.compile(r'[<>:"/\\|?*]')


def clean_original(raw: str | None) -> str:
    """The client's file name as data: control characters out, at most 255 characters."""
    text = "".join(ch for ch in (raw or "") if unicodedata.category(ch)[0] != "C")
    return text[:255]


def display_name(raw: str | None) -> str:
    """A safe display name: the last path part, no control or format characters, no leading
    dots, none of `<>:"/\\|?*`, at most MAX_NAME characters with the extension kept.

    `../../etc/passwd` becomes `passwd`, `..\\..\\x.py` becomes `x.py`. The name is only ever
    shown (the JSON, Content-Disposition); storage keys are random.
    """
    text = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Category C: controls, NUL, and format characters such as U+202E (right-to-left override,
    # which makes "evil\u202eyp.exe" look like "evilexe.py").
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = " ".join(_UNSAFE.sub("_", text).split()).strip(" .")
    if len(text) > MAX_NAME:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = f"{stem[: MAX_NAME - len(ext) - 1].rstrip(' .')}.{ext}"
        else:
            text = text[:MAX_NAME].rstrip(" .")
    return text


def extension_of(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and stem else ""


# ---------------------------------------------------------------- content


def identify(name: str, *, category: str, stream: BinaryIO) -> FileType:
    """The file's type from its name, confirmed by its content; 415 or 422 with the reason.

    415 when the name's type is not accepted in the category or the content is not of that
    type; 422 when it is (valid UTF-8) but invalid as what it claims (Python, JSON).
    """
    allowed = allowed_kinds(category)
    accepted = ", ".join(extensions_of(category))
    ext = extension_of(name)
    chosen = _BY_EXTENSION.get(ext)
    if chosen is None or chosen.kind not in allowed:
        shown = f"{ext} files" if ext else "Files without an extension"
        raise UnsupportedMediaType(
            f"{shown} are not accepted in the category {category}.",
            details={"file": [f"The category {category} takes {accepted}."]},
        )
    stream.seek(0)
    if chosen.magic:
        head = stream.read(len(chosen.magic))
        if head != chosen.magic:
            raise _not_what_it_claims(chosen, "its first bytes are not those of the type")
        if chosen.kind is Kind.XLSX:
            _check_workbook(stream)
    else:
        text = _utf8_text(stream, chosen)
        if chosen.kind is Kind.PY:
            _check_python(text)
        elif chosen.kind is Kind.JSON:
            _check_json(text)
    stream.seek(0)
    return chosen


def _not_what_it_claims(chosen: FileType, why: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"The content is not a {chosen.kind.value} file: {why}.",
        details={"file": [f"Not a {chosen.kind.value} file: {why}."]},
    )


def _check_workbook(stream: BinaryIO) -> None:
    stream.seek(0)
    try:
        with zipfile.ZipFile(stream) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _not_what_it_claims(TYPES[Kind.XLSX], "it is no readable zip archive") from None
    names = {info.filename for info in infos}
    if not {"[Content_Types].xml", "xl/workbook.xml"} <= names:
        raise _not_what_it_claims(TYPES[Kind.XLSX], "the zip holds no Excel workbook")
    if sum(info.file_size for info in infos) > MAX_XLSX_UNPACKED:
        raise Invalid(
            "The workbook unpacks to too much data.",
            details={"file": [f"Unpacked, it may be at most {MAX_XLSX_UNPACKED >> 20} MB."]},
        )


def _utf8_text(stream: BinaryIO, chosen: FileType) -> str:
    """The whole stream as text, or 415 if it is not UTF-8 (a BOM is allowed) or holds NUL."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    parts: list[str] = []
    offset = 0
    try:
        while chunk := stream.read(CHUNK):
            parts.append(decoder.decode(chunk))
            offset += len(chunk)
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        at = offset + exc.start
        raise _not_what_it_claims(chosen, f"it is not UTF-8 text (byte {at})") from None
    text = "".join(parts)
    if "\x00" in text:
        raise _not_what_it_claims(chosen, "text files may not contain NUL characters")
    return text


def _check_python(text: str) -> None:
    try:
        ast.parse(text, filename="<upload>")  # parsed only: nothing in it runs
    except SyntaxError as exc:
        where = f"line {exc.lineno}, col {exc.offset}" if exc.lineno else "somewhere"
        raise Invalid(
            "The file is not valid Python.",
            details={"file": [f"{where}: {exc.msg}"]},
        ) from None
    except (ValueError, RecursionError, MemoryError):
        raise Invalid(
            "The file is not valid Python.", details={"file": ["It cannot be parsed."]}
        ) from None


def _check_json(text: str) -> None:
    try:
        json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Invalid("The file is not valid JSON.", details={"file": [str(exc)]}) from None
