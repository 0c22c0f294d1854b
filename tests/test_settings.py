"""Settings: typed, fail fast in production, one switch moves storage to PostgreSQL and Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask_caching.backends import RedisCache, SimpleCache
from pydantic import ValidationError

from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.kvstore import REDIS_TIMEOUT_SECONDS, MemoryKeyStore, RedisKeyStore
from quantdesk.settings import Settings
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, Backend


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, VAR_DIR=tmp_path)  # type: ignore[call-arg]
    assert settings.database_url == f"sqlite:///{(tmp_path / 'quantdesk.db').resolve()}"
    assert settings.REDIS_URL == ""
    assert settings.ACCESS_TOKEN_MINUTES == 60
    assert settings.REFRESH_TOKEN_DAYS == 30
    assert settings.LOGIN_MAX_FAILURES == 5
    assert settings.RESET_TOKEN_MINUTES == 30


def test_settings_come_from_the_environment_and_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ACCESS_TOKEN_MINUTES=15\nSMTP_HOST=mail.example.com\n")
    monkeypatch.setenv("SMTP_HOST", "from-env.example.com")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.ACCESS_TOKEN_MINUTES == 15
    assert settings.SMTP_HOST == "from-env.example.com"  # the environment wins over .env


def test_bad_values_fail_fast() -> None:
    with pytest.raises(ValidationError, match="ACCESS_TOKEN_MINUTES"):
        Settings(_env_file=None, ACCESS_TOKEN_MINUTES=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="LOG_FORMAT"):
        Settings(_env_file=None, LOG_FORMAT="xml")  # type: ignore[call-arg]


def test_production_refuses_missing_or_weak_secrets() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET_KEY"):
        Settings(_env_file=None, QUANTDESK_ENV="production", DATABASE_URL=TEST_DATABASE_URL)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            QUANTDESK_ENV="production",
            DATABASE_URL=TEST_DATABASE_URL,
            SECRET_KEY="s" * 40,
            JWT_SECRET_KEY="short",
        )


def test_development_generates_and_keeps_secrets(tmp_path: Path) -> None:
    first = Settings(_env_file=None, VAR_DIR=tmp_path).secret("JWT_SECRET_KEY")  # type: ignore[call-arg]
    again = Settings(_env_file=None, VAR_DIR=tmp_path).secret("JWT_SECRET_KEY")  # type: ignore[call-arg]
    assert first == again
    assert len(first) >= 48
    assert (tmp_path / ".jwt_secret_key").stat().st_mode & 0o777 == 0o600


def test_redis_url_moves_cache_limits_and_blocklist_to_redis(
    embedded_backend: Backend, production_backend: Backend
) -> None:
    embedded = create_app(embedded_backend.settings)
    production = create_app(production_backend.settings)
    try:
        e, p = extensions_of(embedded), extensions_of(production)
        assert isinstance(e.keystore, MemoryKeyStore)
        assert isinstance(p.keystore, RedisKeyStore)
        with embedded.app_context():
            assert isinstance(e.cache.cache, SimpleCache)
        with production.app_context():
            assert isinstance(p.cache.cache, RedisCache)
            p.cache.set("probe", 42)
            assert p.cache.get("probe") == 42
            # Bounded waits, as every Redis client of the app: an outage is a quick miss.
            pool = p.cache.cache._write_client.connection_pool
            assert pool.connection_kwargs["socket_timeout"] == REDIS_TIMEOUT_SECONDS
        assert type(e.limiter.storage).__name__ == "MemoryStorage"
        assert type(p.limiter.storage).__name__ == "RedisStorage"
        assert p.db.engine.dialect.name == "postgresql"
        assert e.db.engine.dialect.name == "sqlite"
        assert p.settings.REDIS_URL == TEST_REDIS_URL
    finally:
        extensions_of(embedded).db.dispose()
        extensions_of(production).db.dispose()


def test_readme_documents_every_setting(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == set(Settings.model_fields), (
        f"missing from README: {sorted(set(Settings.model_fields) - documented)}; "
        f"not settings: {sorted(documented - set(Settings.model_fields))}"
    )


def test_sandbox_limits_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, VAR_DIR=tmp_path, SANDBOX_CPU_SECONDS=7, SANDBOX_MAX_RESULT_MB=3
    )
    limits = settings.sandbox_limits()
    assert limits.cpu_seconds == 7
    assert limits.max_result_bytes == 3_000_000
    assert limits.wall_seconds == settings.SANDBOX_WALL_SECONDS
    assert limits.processes == 0  # never a setting: strategies may not start processes
