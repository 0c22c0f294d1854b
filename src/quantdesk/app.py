"""The application factory: the only place that builds extensions and registers blueprints."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask_caching import Cache
from flask_cors import CORS
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from quantdesk import auth, health
from quantdesk.ai import routes as ai_routes
from quantdesk.auth import routes as auth_routes
from quantdesk.auth.tokens import build_jwt
from quantdesk.backtests import routes as backtest_routes
from quantdesk.db import Database
from quantdesk.extensions import Extensions
from quantdesk.files import routes as files_routes
from quantdesk.files.storage import build_storage
from quantdesk.kvstore import KeyStore, MemoryKeyStore, RedisKeyStore, redis_client, redis_options
from quantdesk.logs import configure_logging
from quantdesk.market import routes as market_routes
from quantdesk.metrics import install_metrics
from quantdesk.notifications import routes as notification_routes
from quantdesk.openapi import build_api
from quantdesk.pubsub import build_pubsub
from quantdesk.ratelimit import build_limiter
from quantdesk.settings import Environment, Settings, load_settings
from quantdesk.strategies import routes as strategy_routes
from quantdesk.tasks import CeleryRunner, InProcessRunner, TaskRunner, make_celery
from quantdesk.web import install_error_handlers, install_request_hooks

# Each domain exposes register_routes(api); the order is the order of the API docs.
DOMAINS: tuple[Callable[[Api], None], ...] = (
    health.register_routes,
    auth_routes.register_routes,
    strategy_routes.register_routes,
    backtest_routes.register_routes,
    market_routes.register_routes,
    notification_routes.register_routes,
    files_routes.register_routes,
    ai_routes.register_routes,
)

_ = auth  # the package import keeps its models registered on the metadata


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask("quantdesk")
    app.config.update(
        SECRET_KEY=settings.secret("SECRET_KEY"),
        TESTING=settings.QUANTDESK_ENV is Environment.TEST,
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_MB * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if settings.TRUSTED_PROXIES:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.TRUSTED_PROXIES, x_proto=settings.TRUSTED_PROXIES
        )
    install_request_hooks(app)
    install_metrics(app, broker_url=settings.CELERY_BROKER_URL)

    db = Database(settings)
    db.init_app(app)
    cache = Cache(app, config=_cache_config(settings))
    keystore: KeyStore = (
        RedisKeyStore(redis_client(settings.REDIS_URL)) if settings.REDIS_URL else MemoryKeyStore()
    )
    CORS(
        app,
        resources={r"/api/*": {"origins": settings.cors_origins}},
        expose_headers=["X-Request-ID", "Retry-After"],
        supports_credentials=False,
        max_age=600,
    )
    api = build_api(app)
    for register in DOMAINS:
        register(api)
    jwt = build_jwt(app, settings)
    limiter = build_limiter(app, settings)
    celery = None
    tasks: TaskRunner
    if settings.CELERY_BROKER_URL and not settings.TASKS_EAGER:
        celery = make_celery(
            app,
            broker_url=settings.CELERY_BROKER_URL,
            visibility_timeout=settings.CELERY_VISIBILITY_TIMEOUT_SECONDS,
            concurrency=settings.WORKER_CONCURRENCY,
        )
        tasks = CeleryRunner(celery)
    else:
        tasks = InProcessRunner(app, workers=settings.TASK_WORKERS, eager=settings.TASKS_EAGER)
    Extensions(
        settings=settings,
        db=db,
        api=api,
        jwt=jwt,
        limiter=limiter,
        cache=cache,
        keystore=keystore,
        tasks=tasks,
        pubsub=build_pubsub(settings.REDIS_URL),
        storage=build_storage(settings),
        celery=celery,
    ).install(app)
    install_error_handlers(app)
    return app


def _cache_config(settings: Settings) -> dict[str, object]:
    if settings.REDIS_URL:
        return {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": settings.REDIS_URL,
            # Bounded waits: a Redis outage costs a cached read a recompute, not a long hang.
            "CACHE_OPTIONS": redis_options(),
            "CACHE_KEY_PREFIX": "quantdesk:cache:",
            "CACHE_DEFAULT_TIMEOUT": 300,
        }
    return {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
