"""File endpoints (API.md "Files"): multipart upload, streamed download, list, delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Request, Response, request
from flask_smorest import Api
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict

from quantdesk.auth.tokens import current_user, login_required
from quantdesk.extensions import current_extensions
from quantdesk.files import service
from quantdesk.files.schemas import (
    CategoryListOut,
    FileListArgs,
    FileOut,
    FileStrategyIn,
    UploadIn,
    UsageOut,
)
from quantdesk.openapi import BEARER, ApiBlueprint, SchemaOnceParser
from quantdesk.schemas import page_of, paginate
from quantdesk.strategies.schemas import StrategyOut
from quantdesk.web import requires_json

# Room for the multipart framing and the small form fields around the file itself.
MULTIPART_ALLOWANCE = 64 * 1024


class _MultipartParser(SchemaOnceParser):
    """Reads the `files` location as the whole multipart form: file parts and text fields."""

    def load_files(self, req: Request, schema: Any) -> Any:
        return MultiDictProxy(CombinedMultiDict([req.files, req.form]), schema)


class _FilesBlueprint(ApiBlueprint):
    ARGUMENTS_PARSER = _MultipartParser()


blp = _FilesBlueprint(
    "files", __name__, url_prefix="/api/files", description="Uploads, downloads and data sets"
)


@blp.before_request
def _upload_size_limit() -> None:
    """The upload's own body limit (FILES_MAX_UPLOAD_MB), in place of MAX_CONTENT_MB."""
    if request.endpoint == "files.upload_file":
        limit = current_extensions().settings.FILES_MAX_UPLOAD_MB * service.MB
        request.max_content_length = limit + MULTIPART_ALLOWANCE


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII `filename` and, for other names, RFC 6266's `filename*`."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='!#$&+-.^_`|~')}"
    return value


@blp.post("/upload")
@login_required()
@blp.arguments(UploadIn, location="files")
@blp.response(201, FileOut)
@blp.alt_response(413, description="Larger than FILES_MAX_UPLOAD_MB, or past the quota")
@blp.alt_response(415, description="A type the category does not take, or content that lies")
@blp.doc(security=BEARER)
def upload_file(form: dict[str, Any]) -> Any:
    """Upload a file (multipart); with `dataset`, a price file becomes the symbol user:<name>."""
    ext = current_extensions()
    upload = form["file"]
    return service.upload_file(
        ext.db.session,
        storage=ext.storage,
        settings=ext.settings,
        user=current_user(),
        stream=upload.stream,
        filename=upload.filename,
        category=form.get("category"),
        dataset=form.get("dataset"),
    )


@blp.get("")
@login_required()
@blp.arguments(FileListArgs, location="query")
@blp.response(200, page_of(FileOut))
@blp.doc(security=BEARER)
def list_files(args: dict[str, Any]) -> Any:
    """Your files, newest first; `category` filters."""
    session = current_extensions().db.session
    stmt = service.list_files(session, user=current_user(), category=args.get("category"))
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@blp.get("/categories")
@login_required()
@blp.response(200, CategoryListOut)
@blp.doc(security=BEARER)
def list_categories() -> Any:
    """The categories and the file extensions each one takes."""
    return {"items": service.categories(current_extensions().db.session)}


@blp.get("/usage")
@login_required()
@blp.response(200, UsageOut)
@blp.doc(security=BEARER)
def get_usage() -> Any:
    """How much of your quota your files use, and the largest file you may upload."""
    ext = current_extensions()
    return service.usage(ext.db.session, settings=ext.settings, user=current_user())


@blp.get("/<int:file_id>")
@login_required()
@blp.response(
    200,
    description="The file's bytes, with Content-Disposition: attachment and the sha256 as ETag",
    content_type="application/octet-stream",
)
@blp.alt_response(304, description="If-None-Match holds the file's ETag: not modified")
@blp.doc(security=BEARER)
def download_file(file_id: int) -> Any:
    """Download a file (streamed); send If-None-Match with its ETag to get 304 if unchanged."""
    ext = current_extensions()
    record = service.get_file(ext.db.session, user=current_user(), file_id=file_id)
    headers = {"ETag": f'"{record.sha256}"', "Cache-Control": "private, no-cache"}
    if request.if_none_match.contains_weak(record.sha256):
        return Response(status=304, headers=headers)
    body = service.open_file(ext.storage, record)
    headers["Content-Disposition"] = content_disposition(record.filename)
    headers["Content-Length"] = str(record.size)
    return Response(
        body, status=200, content_type=record.content_type, headers=headers, direct_passthrough=True
    )


@blp.delete("/<int:file_id>")
@login_required()
@blp.response(204)
@blp.doc(security=BEARER)
def delete_file(file_id: int) -> Any:
    """Delete a file and its stored bytes (and the data set made from it)."""
    ext = current_extensions()
    service.delete_file(ext.db.session, storage=ext.storage, user=current_user(), file_id=file_id)


@blp.post("/<int:file_id>/strategy")
@login_required()
@requires_json
@blp.arguments(FileStrategyIn, required=False)
@blp.response(201, StrategyOut)
@blp.doc(security=BEARER)
def strategy_from_file(body: dict[str, Any], file_id: int) -> Any:
    """Make a strategy of an uploaded `.py` (422 with the sandbox check's violations)."""
    ext = current_extensions()
    return service.strategy_from_file(
        ext.db.session,
        storage=ext.storage,
        user=current_user(),
        file_id=file_id,
        name=body.get("name"),
        description=body.get("description"),
    )


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
