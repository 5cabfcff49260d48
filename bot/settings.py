"""Configuration, read from the environment at the entry points only and handed down as plain values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import dotenv

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.errors import ConfigError
from agents.fetch_guard import FetchPolicy


class Settings(BaseSettings):
    """Every setting Overseer reads; env names are the documented ones (SLACK_BOT_TOKEN, DATABASE_URL, ...)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=False)

    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    database_url: str = Field("sqlite:///overseer.db", validation_alias="DATABASE_URL")
    workflows: Path = Field(Path("workflows"), validation_alias="OVERSEER_WORKFLOWS")
    command: str = Field("/overseer", validation_alias="OVERSEER_COMMAND")
    host: str = Field("0.0.0.0", validation_alias="OVERSEER_HOST")
    port: int = Field(3000, ge=1, le=65535, validation_alias="PORT")
    lease_seconds: float = Field(60.0, gt=0, validation_alias="OVERSEER_LEASE_SECONDS")
    # Runs driven at once by this process (a run waiting out a backoff or a human holds no slot).
    max_runs: int = Field(64, ge=1, le=100_000, validation_alias="OVERSEER_MAX_RUNS")
    retry_delay_scale: float = Field(1.0, ge=0, validation_alias="OVERSEER_RETRY_DELAY_SCALE")
    schedule_grace_seconds: float = Field(3600.0, ge=0, validation_alias="OVERSEER_SCHEDULE_GRACE")
    digest_cron: str = Field("0 9 * * *", validation_alias="OVERSEER_DIGEST_CRON")
    digest_tz: str = Field("UTC", validation_alias="OVERSEER_DIGEST_TZ")
    digest_channel: str | None = Field(None, validation_alias="OVERSEER_DIGEST_CHANNEL")
    poll_seconds: float = Field(1.0, gt=0, validation_alias="OVERSEER_POLL_SECONDS")
    fetch_allow: str = Field("", validation_alias="OVERSEER_FETCH_ALLOW")
    # Runs started by this process are mocked: model steps answered from their contracts, no provider called.
    mock: bool = Field(False, validation_alias="OVERSEER_MOCK")
    # The run pages: where people reach `overseer serve`, and the key that signs their links (no key, no pages).
    public_url: str | None = Field(None, validation_alias="OVERSEER_PUBLIC_URL")
    secret_key: SecretStr | None = Field(None, validation_alias="OVERSEER_SECRET_KEY")
    link_days: float = Field(7.0, gt=0, validation_alias="OVERSEER_LINK_DAYS")
    # /metrics and /healthz: the scrape token (none: keep /metrics private), how often the database numbers
    # are re-read, and how old the outbox's oldest message may get before /healthz calls the dispatcher stuck.
    metrics_token: SecretStr | None = Field(None, validation_alias="OVERSEER_METRICS_TOKEN")
    metrics_refresh_seconds: float = Field(15.0, ge=0, validation_alias="OVERSEER_METRICS_REFRESH_SECONDS")
    health_backlog_seconds: float = Field(300.0, gt=0, validation_alias="OVERSEER_HEALTH_BACKLOG_SECONDS")
    # Traces and model-call logging: OTLP/HTTP spans when an endpoint is set (needs the `otel` extra), and
    # litellm's own callbacks by name (langfuse, langsmith, ...), each call carrying the run's ids as metadata.
    otel_endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str = Field("overseer", validation_alias="OTEL_SERVICE_NAME")
    litellm_callbacks: str = Field("", validation_alias="OVERSEER_LITELLM_CALLBACKS")
    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias="OVERSEER_LOG_FORMAT")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=AliasChoices("OVERSEER_LOG_LEVEL", "LOG_LEVEL")
    )

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError("must look like /overseer")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or any(c in value for c in "<>|? "):
            raise ValueError("must be an http(s) URL without a query, like https://overseer.example.com")
        return value.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. the output of `openssl rand -hex 32`)")
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, like http://localhost:4318 (OTLP over HTTP)")
        return value.rstrip("/")

    @field_validator("litellm_callbacks")
    @classmethod
    def _callbacks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        bad = [n for n in names if not n.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"{', '.join(bad)}: name litellm callbacks, comma-separated (e.g. langfuse,langsmith)")
        return ",".join(names)

    @field_validator("fetch_allow")
    @classmethod
    def _fetch_allow(cls, value: str) -> str:
        FetchPolicy.parse(value)  # a ValueError names the bad entry
        return value

    @field_validator("digest_tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("digest_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from agents.cron import crontab_trigger

        try:
            crontab_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"bad cron expression: {exc}") from None
        return value

    @property
    def fetch_policy(self) -> FetchPolicy:
        """The non-public hosts and networks fetch_page may reach (OVERSEER_FETCH_ALLOW)."""
        return FetchPolicy.parse(self.fetch_allow)

    @property
    def callback_names(self) -> list[str]:
        """The litellm callbacks to switch on (OVERSEER_LITELLM_CALLBACKS)."""
        return [n for n in self.litellm_callbacks.split(",") if n]

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token is set; HTTP otherwise."""
        return self.slack_app_token is not None

    def require_slack(self) -> None:
        """Raise ConfigError naming the first Slack setting `overseer serve` lacks or cannot use."""
        token = self.slack_bot_token.get_secret_value() if self.slack_bot_token else ""
        if not token:
            raise ConfigError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-...)")
        if not token.startswith("xox"):
            raise ConfigError("SLACK_BOT_TOKEN does not look like a Slack token (xoxb-...)")
        if self.socket_mode:
            app = self.slack_app_token.get_secret_value() if self.slack_app_token else ""
            if not app.startswith("xapp-"):
                raise ConfigError("SLACK_APP_TOKEN does not look like an app-level token (xapp-...)")
        elif not (self.slack_signing_secret and self.slack_signing_secret.get_secret_value().strip()):
            # Without it every request would be "verified" against an empty key: anyone could forge one.
            raise ConfigError("SLACK_SIGNING_SECRET is not set (needed in HTTP mode; or set SLACK_APP_TOKEN for Socket Mode)")


def _env_name(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    return alias if isinstance(alias, str) else name.upper()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad one is a ConfigError naming it, in one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        env = _env_name(field) if field in Settings.model_fields else field
        raise ConfigError(f"{env}: {err['msg'].removeprefix('Value error, ')}") from None


def load_env_file(path: Path = Path(".env")) -> bool:
    """Read KEY=VALUE lines from `path` (the working directory's .env) into the environment; what the
    environment already sets wins. Whether there was a file."""
    if not path.is_file():
        return False
    dotenv.load_dotenv(path, override=False)
    return True


def secrets_from_env() -> dict[str, str]:
    """The environment, for steps whose spec names their API key by `api_key_env`."""
    return dict(os.environ)
