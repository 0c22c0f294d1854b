"""The per-app services (database, cache, limiter, token store, tasks, docs) in one typed object.

flask-smorest's `Api` and Flask-Limiter keep per-app state on the extension instance itself, so
module-level instances would be shared, and overwritten, by two apps in one process (the test
suite runs an embedded and a production app side by side). `create_app` therefore builds one
`Extensions` per app and stores it in `app.extensions`; code in a request reaches it through
`current_extensions()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from celery import Celery
from flask import Flask, current_app
from flask_caching import Cache
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_smorest import Api

from quantdesk.db import Database
from quantdesk.files.storage import Storage
from quantdesk.kvstore import KeyStore
from quantdesk.pubsub import PubSub
from quantdesk.settings import Settings
from quantdesk.tasks import TaskRunner

_KEY = "quantdesk"


@dataclass
class Extensions:
    settings: Settings
    db: Database
    api: Api
    jwt: JWTManager
    limiter: Limiter
    cache: Cache
    keystore: KeyStore
    tasks: TaskRunner
    pubsub: PubSub
    storage: Storage
    celery: Celery | None = None

    def install(self, app: Flask) -> None:
        app.extensions[_KEY] = self


def extensions_of(app: Flask) -> Extensions:
    return cast(Extensions, app.extensions[_KEY])


def current_extensions() -> Extensions:
    return extensions_of(current_app)
