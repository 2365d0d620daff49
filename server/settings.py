"""Typed settings, read once from the environment and `.env` at start."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceParseError

# Values of variables whose names contain these words never appear in error messages.
SECRET_WORDS = ("SECRET", "PASSWORD", "KEY", "URL")

PLACEHOLDER_JWT_SECRETS = {"", "change-me", "changeme", "secret", "dev-secret-change-me"}
# HS256 signing keys shorter than the 32-byte hash output are easier to guess offline from one token.
MIN_JWT_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Platform configuration; every field maps to the environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "test", "production"] = "development"
    data_dir: str = "./var"

    database_url: str | None = None
    redis_url: str | None = None

    backend_host: str = "0.0.0.0"
    backend_port: int = Field(8000, ge=1, le=65535)
    backend_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)

    db_pool_size: int = Field(10, ge=1, le=500)
    db_max_overflow: int = Field(5, ge=0, le=500)
    db_pool_timeout: float = Field(5.0, gt=0)
    db_pool_recycle: float = Field(1800.0, gt=0)
    db_reserved_connections: int = Field(10, ge=0)
    redis_max_connections: int = Field(50, ge=1)

    cache_enabled: bool = True
    cache_ttl_seconds: int = Field(300, ge=1)
    cache_user_profile_ttl: int = Field(60, ge=1)
    cache_permissions_ttl: int = Field(60, ge=1)
    cache_search_results_ttl: int = Field(120, ge=1)

    rate_limit_enabled: bool = True
    rate_limit_per_minute: int = Field(60, ge=1)
    rate_limit_per_hour: int = Field(1000, ge=1)

    enable_metrics: bool = False
    statsd_host: str = "127.0.0.1"
    statsd_port: int = Field(8125, ge=1, le=65535)
    statsd_prefix: str = "ragplatform"

    log_level: str = "INFO"

    jwt_secret: str = "dev-secret-change-me"
    jwt_expires_seconds: int = Field(3600, ge=60)

    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    allow_signup: bool = True

    sse_heartbeat_seconds: float = Field(15.0, gt=0)
    graceful_shutdown_timeout: float = Field(30.0, ge=0)
    max_concurrent_streams: int = Field(4, ge=1)

    llm_provider: Literal["extractive", "openai"] = "extractive"
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str | None = None

    chunk_tokens: int = Field(200, ge=16, le=256)
    chunk_overlap_tokens: int = Field(40, ge=0)
    embedding_batch_size: int = Field(32, ge=1, le=512)
    ingestion_job_timeout: int = Field(1800, ge=10)
    dashboard_password: str | None = None

    # Metrics: how often each web worker sends the pool, stream and queue gauges.
    metrics_sample_seconds: float = Field(10.0, gt=0)
    # Database roles: migrations run as this owner role; DATABASE_URL is the application's role.
    database_admin_url: str | None = None
    # Caching and overload: requests one worker holds at most before it answers 503 (0: no limit),
    # and the Retry-After of that 503.
    max_in_flight_requests: int = Field(100, ge=0)
    overload_retry_after_seconds: int = Field(1, ge=1)
    # Chat agent and its event streams.
    chat_max_steps: int = Field(8, ge=1, le=50)
    chat_events_ttl_seconds: int = Field(900, ge=10)
    chat_events_max_length: int = Field(10_000, ge=100)
    llm_timeout_seconds: float = Field(60.0, gt=0)
    # Background jobs: fair ingestion scheduling, retries, expiry and the maintenance sweep.
    ingestion_max_queued_per_tenant: int = Field(1000, ge=1)
    ingestion_dispatch_window: int = Field(2, ge=1, le=1000)
    ingestion_retry_delays: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [5, 30, 120], max_length=10)
    job_result_ttl: int = Field(24 * 3600, ge=1)
    job_failure_ttl: int = Field(7 * 24 * 3600, ge=1)
    job_monitoring_interval: int = Field(10, ge=1, le=600)
    maintenance_sweep_interval: int = Field(30, ge=1, le=3600)
    usage_refresh_interval: int = Field(300, ge=10, le=86400)
    # Logs: `json` (one object per line) or `text` (key=value lines). Left unset, it is json when
    # ENVIRONMENT is production and text otherwise.
    log_format: Literal["json", "text"] | None = None

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _lowercase_log_format(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_log_format(self) -> "Settings":
        if self.log_format is None:
            self.log_format = "json" if self.environment == "production" else "text"
        return self

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> "Settings":
        if self.environment != "development" and self.jwt_secret in PLACEHOLDER_JWT_SECRETS:
            raise ValueError(f"JWT_SECRET is a placeholder; set a random secret of {MIN_JWT_SECRET_LENGTH}+ "
                             f"characters when ENVIRONMENT is {self.environment}")
        if self.environment != "development" and len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET is {len(self.jwt_secret)} characters long; set a random secret of "
                             f"{MIN_JWT_SECRET_LENGTH}+ characters when ENVIRONMENT is {self.environment}")
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS")
        return self

    @model_validator(mode="after")
    def _openai_provider_needs_endpoint(self) -> "Settings":
        if self.llm_provider == "openai" and not (self.llm_base_url and self.llm_model):
            raise ValueError("LLM_BASE_URL and LLM_MODEL must be set when LLM_PROVIDER is openai")
        return self

    @property
    def db_pool_max(self) -> int:
        return self.db_pool_size + self.db_max_overflow


class SettingsError(SystemExit):
    """Raised at start when a variable is invalid; the message names each variable."""


def format_validation_error(error: ValidationError) -> str:
    lines = ["Invalid configuration:"]
    for item in error.errors():
        if not item["loc"]:
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
            continue
        name = ".".join(str(part) for part in item["loc"]).upper()
        value_text = "<hidden>" if any(word in name for word in SECRET_WORDS) else repr(item.get("input"))
        lines.append(f"  {name}: {item['msg']} (got {value_text})")
    return "\n".join(lines)


# pydantic-settings 2.x words a value of a list or dict field that is not JSON this way.
SOURCE_PARSE_FIELD = re.compile(r'error parsing value for field "(?P<field>\w+)"')


def format_source_parse_error(error: SourceParseError) -> str:
    match = SOURCE_PARSE_FIELD.search(str(error))
    name = match["field"].upper() if match else "a list or dict variable"
    return f"Invalid configuration:\n  {name}: must be valid JSON, such as [5, 30, 120] for a list"


def load_settings() -> Settings:
    """Read the settings, turning validation errors into a message that names each variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(format_validation_error(error)) from None
    except SourceParseError as error:
        raise SettingsError(format_source_parse_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
