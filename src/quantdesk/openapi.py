"""The OpenAPI 3 document and an offline Swagger UI: `/api/openapi.json`, `/api/docs`.

flask-smorest builds the document from the same marshmallow schemas that validate requests;
the Swagger UI assets come from the flask-swagger-ui package and are served by this app, so
the docs page loads with no internet.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import flask_smorest
import flask_swagger_ui
from flask import Blueprint, Flask, Request, send_from_directory
from flask_smorest import Api
from marshmallow import Schema, fields
from webargs.flaskparser import FlaskParser

from quantdesk import __version__

SWAGGER_ASSETS_URL = "/api/docs/assets/"
# The security requirement of every endpoint that needs a logged-in user (for @blp.doc).
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_SWAGGER_DIST = Path(flask_swagger_ui.__file__).parent / "dist"


class SchemaOnceParser(FlaskParser):
    """webargs' Flask parser, building each argument schema class once, not once per request.

    marshmallow deep-copies every declared field when a schema is instantiated, about a tenth
    of a millisecond per request; one shared instance loads just the same (`load` keeps its
    state in local variables, so threads can share it).
    """

    def _get_schema(self, argmap: Any, req: Request) -> Schema:
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            return _instance_of(argmap)
        return super()._get_schema(argmap, req)


@functools.cache
def _instance_of(schema_class: type[Schema]) -> Schema:
    return schema_class()


class ApiBlueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """The blueprint of every API module: flask-smorest's, with the parser above."""

    ARGUMENTS_PARSER = SchemaOnceParser()


class ErrorBody(Schema):
    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorOut(Schema):
    """API.md's one error shape."""

    error = fields.Nested(ErrorBody, required=True)


class QuantDeskApi(Api):  # type: ignore[misc]
    """flask-smorest's Api with our error shape in the documented default error response."""

    ERROR_SCHEMA = ErrorOut


def openapi_config(settings_version: str = __version__) -> dict[str, Any]:
    return {
        "API_TITLE": "QuantDesk API",
        "API_VERSION": settings_version,
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": SWAGGER_ASSETS_URL,
        "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True},
        "API_SPEC_OPTIONS": {
            "info": {
                "description": "REST API of QuantDesk. Errors always have the shape "
                '`{"error": {"code", "message", "details"}}`. Lists are paginated with '
                "`page` and `per_page` (at most 100)."
            },
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
        },
    }


def build_api(app: Flask) -> QuantDeskApi:
    app.config.update(openapi_config())
    api = QuantDeskApi(app)
    app.register_blueprint(_swagger_assets)
    return api


_swagger_assets = Blueprint("swagger_assets", __name__)


@_swagger_assets.get(f"{SWAGGER_ASSETS_URL}<path:filename>")
def swagger_asset(filename: str) -> Any:
    """Swagger UI's JS and CSS from the installed flask-swagger-ui package."""
    return send_from_directory(_SWAGGER_DIST, filename, max_age=86400)
