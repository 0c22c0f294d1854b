"""The one typed settings object, from the environment and `.env`; nothing else reads os.environ.

Defaults are the embedded mode (SQLite under ./var, in-process cache, tasks and limits), so
`quantdesk serve` works with no configuration. Production is setting DATABASE_URL, REDIS_URL and
friends. Every field is documented in README.md's settings table (a test keeps the two in step).
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from quantdesk.sandbox.limits import SandboxLimits


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class MarketProvider(StrEnum):
    SAMPLE = "sample"
    AKSHARE = "akshare"
    YFINANCE = "yfinance"


class FileStorage(StrEnum):
    """Where uploaded files live: a local folder or an S3-compatible bucket."""

    LOCAL = "local"
    S3 = "s3"


class Settings(BaseSettings):
    """Settings of one QuantDesk process. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    QUANTDESK_ENV: Environment = Field(
        Environment.DEVELOPMENT,
        description="development, test or production; production refuses missing secrets",
    )
    VAR_DIR: Path = Field(
        Path("var"), description="folder for the SQLite file, generated secrets and uploads"
    )
    DATABASE_URL: str = Field(
        "",
        description="SQLAlchemy URL; empty means sqlite:///VAR_DIR/quantdesk.db. "
        "Production: postgresql+psycopg://user:pass@host:5432/db",
    )
    DB_POOL_SIZE: int = Field(10, ge=1, description="connections kept open per process")
    DB_MAX_OVERFLOW: int = Field(10, ge=0, description="extra connections under load")
    DB_POOL_RECYCLE_SECONDS: int = Field(1800, ge=1, description="reconnect older connections")
    DB_CONNECT_TIMEOUT_SECONDS: int = Field(
        5,
        ge=1,
        description="PostgreSQL connect timeout; an unreachable database fails a request "
        "(503) after this instead of hanging",
    )
    DATABASE_REPLICA_URL: str = Field(
        "",
        description="read replica for read-only queries (market history and indicators, "
        "strategy and backtest lists, backtest reports); empty means they use DATABASE_URL",
    )
    REDIS_URL: str = Field(
        "",
        description="redis://host:6379/0; when set, cache, rate limits and the token blocklist "
        "live in Redis, otherwise in-process",
    )
    SECRET_KEY: str = Field(
        "", description="Flask secret; empty in development means generated into VAR_DIR"
    )
    JWT_SECRET_KEY: str = Field(
        "", description="HS256 signing key; empty in development means generated into VAR_DIR"
    )
    ACCESS_TOKEN_MINUTES: int = Field(60, ge=1, description="access token lifetime")
    REFRESH_TOKEN_DAYS: int = Field(30, ge=1, description="refresh token lifetime")
    PASSWORD_MIN_LENGTH: int = Field(8, ge=8, description="minimum password length")
    ARGON2_TIME_COST: int = Field(3, ge=1, description="argon2id iterations")
    ARGON2_MEMORY_KIB: int = Field(65536, ge=8, description="argon2id memory per hash")
    LOGIN_MAX_FAILURES: int = Field(5, ge=1, description="failed logins before a lock-out")
    LOGIN_WINDOW_MINUTES: int = Field(15, ge=1, description="window in which failures count")
    LOGIN_LOCKOUT_MINUTES: int = Field(15, ge=1, description="how long a locked account waits")
    AUTH_RATE_LIMIT: str = Field(
        "20 per minute",
        description="limit per client address on register, login, refresh and reset-password",
    )
    API_RATE_LIMIT_PER_USER: str = Field(
        "600 per minute",
        description="limit per user (valid bearer token) on the whole API; health, metrics "
        "and docs are exempt",
    )
    API_RATE_LIMIT_PER_ADDRESS: str = Field(
        "1200 per minute",
        description="limit per client address on the whole API; health, metrics and docs "
        "are exempt",
    )
    RATELIMIT_ENABLED: bool = Field(True, description="switch all rate limits off (never in prod)")
    RESET_TOKEN_MINUTES: int = Field(30, ge=1, description="password-reset token lifetime")
    PASSWORD_RESET_URL: str = Field(
        "http://127.0.0.1:5173/reset-password?token={token}",
        description="link mailed for a reset; {token} is replaced",
    )
    SMTP_HOST: str = Field("", description="mail server; empty means mail goes to log + outbox")
    SMTP_PORT: int = Field(587, ge=1, le=65535, description="mail server port")
    SMTP_USERNAME: str = Field("", description="SMTP login, if the server needs one")
    SMTP_PASSWORD: str = Field("", description="SMTP password")
    SMTP_USE_TLS: bool = Field(True, description="STARTTLS before login")
    SMTP_TIMEOUT_SECONDS: float = Field(10.0, gt=0, description="SMTP connect/send timeout")
    MAIL_FROM: str = Field("QuantDesk <noreply@quantdesk.local>", description="sender address")
    CORS_ORIGINS: str = Field(
        "http://localhost:5173,http://127.0.0.1:5173",
        description="comma-separated origins allowed to call the API from a browser",
    )
    MAX_CONTENT_MB: int = Field(16, ge=1, description="largest request body; bigger gives 413")
    FILES_STORAGE: FileStorage = Field(
        FileStorage.LOCAL,
        description="where uploaded files live: local (a folder, FILES_LOCAL_DIR) or s3 "
        "(an S3-compatible bucket, FILES_S3_*)",
    )
    FILES_LOCAL_DIR: Path | None = Field(
        None, description="folder of uploaded files (local storage); empty means VAR_DIR/uploads"
    )
    FILES_S3_BUCKET: str = Field(
        "", description="bucket of uploaded files (s3 storage; required there)"
    )
    FILES_S3_ENDPOINT_URL: str = Field(
        "",
        description="S3 API address, e.g. http://minio:9000; empty means AWS S3 itself",
    )
    FILES_S3_REGION: str = Field("us-east-1", description="region of the bucket")
    FILES_S3_ACCESS_KEY_ID: str = Field(
        "", description="S3 access key; empty means boto3's own chain (e.g. an instance role)"
    )
    FILES_S3_SECRET_ACCESS_KEY: str = Field("", description="S3 secret key")
    FILES_S3_ADDRESSING_STYLE: str = Field(
        "auto",
        pattern="^(auto|path|virtual)$",
        description="auto, path or virtual; S3-compatible servers such as MinIO want path",
    )
    FILES_S3_PREFIX: str = Field(
        "", description="prefix of every object key, for a bucket shared with other data"
    )
    FILES_MAX_UPLOAD_MB: int = Field(
        16, ge=1, description="largest uploaded file; bigger gives 413 (also past MAX_CONTENT_MB)"
    )
    FILES_QUOTA_MB: int = Field(
        200,
        ge=1,
        description="stored files per user, all categories; past it an upload is a 413 "
        "(`quota_exceeded`)",
    )
    FILES_DATASET_MAX_ROWS: int = Field(
        100_000, ge=1, description="rows of one uploaded data set (CSV or XLSX price file)"
    )
    LOG_LEVEL: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    LOG_FORMAT: str = Field("json", pattern="^(json|text)$", description="json or text")
    TASKS_EAGER: bool = Field(
        False, description="run background tasks inline (tests); otherwise a thread pool / Celery"
    )
    TASK_WORKERS: int = Field(4, ge=1, description="threads of the in-process task executor")
    CELERY_BROKER_URL: str = Field(
        "",
        description="redis://... or amqp://...; when set, background tasks go to Celery workers "
        "(`quantdesk worker`), otherwise they run in-process",
    )
    CELERY_VISIBILITY_TIMEOUT_SECONDS: int = Field(
        3600,
        ge=1,
        description="Redis broker: a task whose worker died is delivered again after this long",
    )
    WORKER_CONCURRENCY: int = Field(2, ge=1, description="processes of one `quantdesk worker`")
    WORKER_METRICS_PORT: int = Field(
        0,
        ge=0,
        le=65535,
        description="`quantdesk worker` serves Prometheus metrics on this port (0: off); set "
        "PROMETHEUS_MULTIPROC_DIR too, so its pool processes' task counts are included",
    )
    PROMETHEUS_MULTIPROC_DIR: str = Field(
        "",
        description="folder for prometheus_client's multiprocess mode (gunicorn with several "
        "workers, `quantdesk worker`); must be in the process environment before it starts, "
        "not only in .env; emptied at start",
    )
    SANDBOX_CPU_SECONDS: int = Field(60, ge=1, description="CPU time of one strategy run")
    SANDBOX_WALL_SECONDS: float = Field(
        120.0, gt=0, description="wall-clock time of one strategy run (sleeping counts)"
    )
    SANDBOX_MEMORY_MB: int = Field(2048, ge=256, description="address space of one strategy run")
    SANDBOX_FILE_SIZE_MB: int = Field(10, ge=1, description="scratch space of one strategy run")
    SANDBOX_OPEN_FILES: int = Field(64, ge=16, description="open files of one strategy run")
    SANDBOX_MAX_LOG_LINES: int = Field(1000, ge=1, description="ctx.log lines kept per run")
    SANDBOX_MAX_LOG_BYTES: int = Field(100_000, ge=1, description="ctx.log bytes kept per run")
    SANDBOX_MAX_RECORD_SERIES: int = Field(20, ge=1, description="ctx.record series per run")
    SANDBOX_MAX_RECORD_POINTS: int = Field(
        200_000, ge=1, description="ctx.record values per run, over all series"
    )
    SANDBOX_MAX_RESULT_MB: int = Field(20, ge=1, description="size of a run's result (JSON)")
    BACKTEST_MAX_GRID_COMBINATIONS: int = Field(
        200, ge=1, description="parameter combinations one grid request may ask for (more is a 422)"
    )
    BACKTEST_MAX_SYMBOLS: int = Field(100, ge=1, description="symbols of one backtest request")
    TRUSTED_PROXIES: int = Field(
        0, ge=0, description="number of reverse proxies whose X-Forwarded-For is believed"
    )
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: bool | None = Field(
        None,
        description="let webhooks reach private, loopback and link-local addresses; empty means "
        "true outside production (a laptop's own network) and false in production",
    )
    ENCRYPTION_KEY: str = Field(
        "",
        description="Fernet key(s) for secrets at rest (webhook URLs and secrets), "
        "comma-separated, newest first; empty means derived from SECRET_KEY (HKDF-SHA256)",
    )
    WEBHOOK_TIMEOUT_SECONDS: float = Field(
        5.0, gt=0, description="connect and read timeout of one webhook call"
    )
    NOTIFY_RETRIES: int = Field(
        3, ge=0, le=10, description="retries of a failed email or webhook delivery"
    )
    NOTIFY_BACKOFF_SECONDS: float = Field(
        2.0, ge=0, description="wait before a delivery's first retry; doubles on each further retry"
    )
    NOTIFY_STREAM_KEEPALIVE_SECONDS: float = Field(
        15.0, gt=0, description="an idle notification stream sends a comment this often (proxies)"
    )
    NOTIFY_STREAM_MAX_SECONDS: float = Field(
        300.0,
        gt=0,
        description="a notification stream closes after this long; browsers reconnect",
    )
    NOTIFY_TEST_RATE_LIMIT: str = Field(
        "10 per minute", description="limit per client address on POST /api/notifications/test"
    )
    DEEPSEEK_API_KEY: SecretStr = Field(
        SecretStr(""),
        description="API key of DeepSeek or any OpenAI-compatible endpoint; empty means the "
        "offline analyst answers every AI endpoint and no request leaves the machine",
    )
    DEEPSEEK_API_URL: str = Field(
        "https://api.deepseek.com",
        description="base URL of the OpenAI-compatible chat-completions API (DeepSeek; a local "
        "vLLM or Ollama such as http://127.0.0.1:11434/v1; Qwen; OpenAI)",
    )
    AI_MODEL: str = Field(
        "deepseek-chat", min_length=1, description="model name sent to the AI endpoint"
    )
    AI_TIMEOUT_SECONDS: float = Field(
        60.0, gt=0, description="timeout of one model call (connect, and each wait for data)"
    )
    AI_MAX_RETRIES: int = Field(
        2,
        ge=0,
        le=10,
        description="retries of a model call after a timeout, a lost connection, a 429 or a 5xx, "
        "only before any of its answer has arrived",
    )
    AI_MAX_OUTPUT_TOKENS: int = Field(
        1500, ge=16, description="most tokens the model may write in one answer"
    )
    AI_HISTORY_TOKEN_BUDGET: int = Field(
        6000,
        ge=200,
        description="estimated tokens of earlier conversation sent with a new message; older "
        "messages are left out",
    )
    AI_MAX_TOOL_ROUNDS: int = Field(
        5, ge=1, le=20, description="rounds of tool calls in one answer before the model must reply"
    )
    AI_DAILY_REQUESTS_PER_USER: int = Field(
        200,
        ge=0,
        description="AI requests (messages, analyses, advice) per user and UTC day; more is a 429; "
        "0 means no limit",
    )
    MARKET_PROVIDER: MarketProvider = Field(
        MarketProvider.SAMPLE,
        description="market data provider of `quantdesk data sync` without --provider: sample "
        "(offline, bundled), akshare (A-shares, indices) or yfinance (US)",
    )
    MARKET_SEED_ON_START: bool = Field(
        True, description="`quantdesk serve` loads the sample data once when no stock is stored"
    )
    MARKET_CACHE_SECONDS: int = Field(
        3600, ge=1, description="lifetime of cached history and indicator answers (a sync clears)"
    )
    MARKET_SYNC_RETRIES: int = Field(
        3, ge=0, description="retries per symbol after a failed provider call"
    )
    MARKET_SYNC_BACKOFF_SECONDS: float = Field(
        2.0, ge=0, description="wait before the first retry; doubles on each further retry"
    )
    MARKET_SYNC_TIME: str = Field(
        "15:30",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="the daily sync runs after this time (HH:MM) on trading days",
    )
    MARKET_SYNC_TIMEZONE: str = Field(
        "Asia/Shanghai", description="time zone of MARKET_SYNC_TIME and of the trading calendar"
    )
    MARKET_SYNC_LOOKBACK_DAYS: int = Field(
        10, ge=1, description="days the daily sync fetches again, to catch late corrections"
    )
    AKSHARE_TIMEOUT_SECONDS: float = Field(
        15.0, gt=0, description="timeout of one akshare call (Eastmoney, Tencent)"
    )
    AKSHARE_REQUEST_INTERVAL_SECONDS: float = Field(
        0.5, ge=0, description="pause between two akshare calls, so the sources do not ban us"
    )
    YFINANCE_TIMEOUT_SECONDS: float = Field(15.0, gt=0, description="timeout of one yfinance call")
    PAPER_SCHEDULE: str = Field(
        "30 15 * * 1-5",
        description="crontab (minute hour day month weekday; 1-5 is Monday to Friday) of a "
        "paper-trading run started without `schedule`; holidays are skipped",
    )
    PAPER_TIMEZONE: str = Field(
        "Asia/Shanghai", description="time zone of paper-trading schedules and their holidays"
    )
    PAPER_TRADING_DAYS_ONLY: bool = Field(
        True,
        description="paper-trading ticks on days the market is closed enqueue nothing (off: every "
        "tick enqueues a step, which does nothing without a new bar)",
    )
    PAPER_WARMUP_BARS: int = Field(
        250, ge=1, description="bars of history a paper-trading step loads before its first new bar"
    )
    PAPER_MISFIRE_GRACE_SECONDS: int = Field(
        21_600,
        ge=1,
        description="a schedule tick missed while no scheduler ran still fires this long after",
    )
    SCHEDULER_SYNC_SECONDS: float = Field(
        30.0,
        gt=0,
        description="how often the scheduler matches its stored jobs to the running strategies",
    )
    SCHEDULER_IN_SERVER: bool = Field(
        True,
        description="`quantdesk serve` runs the schedule itself (embedded); production runs one "
        "`quantdesk scheduler` process instead",
    )

    @field_validator("DATABASE_URL", "DATABASE_REPLICA_URL", "REDIS_URL", "SMTP_HOST")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("API_RATE_LIMIT_PER_USER", "API_RATE_LIMIT_PER_ADDRESS")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value.strip())
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '600 per minute': {value!r}") from exc
        return value.strip()

    @field_validator("DEEPSEEK_API_URL")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("FILES_LOCAL_DIR", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("PAPER_SCHEDULE")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from quantdesk.cron import cron_trigger

        cron_trigger(value.strip(), "UTC")  # ValueError with the reason
        return value.strip()

    @field_validator("MARKET_SYNC_TIMEZONE", "PAPER_TIMEZONE")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("ENCRYPTION_KEY")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        from cryptography.fernet import Fernet

        for key in (part.strip() for part in value.split(",")):
            if not key:
                continue
            try:
                Fernet(key)
            except ValueError as exc:
                raise ValueError(
                    "each key must be a Fernet key: 32 url-safe base64-encoded bytes "
                    "(Fernet.generate_key())"
                ) from exc
        return value.strip()

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.FILES_STORAGE is FileStorage.S3 and not self.FILES_S3_BUCKET.strip():
            raise ValueError("FILES_STORAGE=s3 needs FILES_S3_BUCKET")
        return self

    @model_validator(mode="after")
    def _refuse_missing_secrets_in_production(self) -> Settings:
        if self.QUANTDESK_ENV is Environment.PRODUCTION:
            missing = [
                name
                for name in ("SECRET_KEY", "JWT_SECRET_KEY", "DATABASE_URL")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"production needs these settings: {', '.join(missing)}")
            if len(self.JWT_SECRET_KEY) < 32:
                raise ValueError("JWT_SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{(self.VAR_DIR / 'quantdesk.db').resolve()}"

    @property
    def files_local_dir(self) -> Path:
        """FILES_LOCAL_DIR, or VAR_DIR/uploads."""
        return self.FILES_LOCAL_DIR or self.VAR_DIR / "uploads"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def webhook_allow_private_networks(self) -> bool:
        """WEBHOOK_ALLOW_PRIVATE_NETWORKS, or its default: true except in production."""
        if self.WEBHOOK_ALLOW_PRIVATE_NETWORKS is not None:
            return self.WEBHOOK_ALLOW_PRIVATE_NETWORKS
        return self.QUANTDESK_ENV is not Environment.PRODUCTION

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip() for origin in self.CORS_ORIGINS.split(",") if origin.strip()]

    def sandbox_limits(self) -> SandboxLimits:
        """The limits every sandboxed strategy run gets (quantdesk.sandbox)."""
        from quantdesk.sandbox.limits import SandboxLimits

        return SandboxLimits(
            cpu_seconds=self.SANDBOX_CPU_SECONDS,
            wall_seconds=self.SANDBOX_WALL_SECONDS,
            memory_mb=self.SANDBOX_MEMORY_MB,
            file_size_mb=self.SANDBOX_FILE_SIZE_MB,
            open_files=self.SANDBOX_OPEN_FILES,
            max_log_lines=self.SANDBOX_MAX_LOG_LINES,
            max_log_bytes=self.SANDBOX_MAX_LOG_BYTES,
            max_record_series=self.SANDBOX_MAX_RECORD_SERIES,
            max_record_points=self.SANDBOX_MAX_RECORD_POINTS,
            max_result_bytes=self.SANDBOX_MAX_RESULT_MB * 1_000_000,
        )

    def secret(self, name: str) -> str:
        """A configured secret, or one generated once into VAR_DIR outside production.

        Generated secrets survive restarts (tokens stay valid) without a default secret in code.
        """
        value: str = getattr(self, name)
        if value:
            return value
        path = self.VAR_DIR / f".{name.lower()}"
        if path.exists():
            return path.read_text().strip()
        self.VAR_DIR.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `.env`, with explicit overrides on top (tests, CLI)."""
    return Settings(**overrides)
