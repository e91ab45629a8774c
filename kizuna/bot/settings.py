"""Settings from the environment (and `.env`), validated once at start-up.

A missing or malformed setting stops start-up with one line naming the variable
(`SettingsError`); the CLI prints that line and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .ratelimit import LINE_RATE_LIMITS, parse_rate_limits

LINE_API = "https://api.line.me"
LINE_DATA_API = "https://api-data.line.me"
# LINE Login's authorization page; its token and verify endpoints are on LINE_API.
LINE_LOGIN = "https://access.line.me"

# Used only when no LINE credentials are configured: `kizuna serve` then mounts the
# emulator and both sides share these values. They are never valid on the real LINE.
EMULATOR_CHANNEL_SECRET = "emulator-channel-secret-0000000000"
EMULATOR_ACCESS_TOKEN = "emulator-access-token"
# The emulator's LINE Login channel (kizuna/emulator/login.py has the same defaults).
EMULATOR_LOGIN_CHANNEL_ID = "2000000000"
EMULATOR_LOGIN_CHANNEL_SECRET = "emulator-login-channel-secret"


class SettingsError(Exception):
    """One clear line naming the variable that is missing or malformed."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    line_channel_secret: str | None = Field(default=None, validation_alias="LINE_CHANNEL_SECRET")
    line_channel_access_token: str | None = Field(
        default=None, validation_alias="LINE_CHANNEL_ACCESS_TOKEN"
    )
    line_api_base_url: str = Field(default=LINE_API, validation_alias="LINE_API_BASE_URL")
    line_data_api_base_url: str = Field(
        default=LINE_DATA_API, validation_alias="LINE_DATA_API_BASE_URL"
    )
    # LINE Login (friend-add sources, bot/friend_links.py): a LINE Login channel of the same
    # provider as the Messaging API channel, with the official account linked to it (the
    # add-friend option). Its callback URL is {KIZUNA_PUBLIC_URL}/f/callback.
    line_login_channel_id: str | None = Field(default=None, validation_alias="LINE_LOGIN_CHANNEL_ID")
    line_login_channel_secret: str | None = Field(default=None, validation_alias="LINE_LOGIN_CHANNEL_SECRET")
    line_login_base_url: str = Field(default=LINE_LOGIN, validation_alias="LINE_LOGIN_BASE_URL")
    # The official account's basic id (@xxxx): where a person who logged in without adding the
    # friend is sent (https://line.me/R/ti/p/@xxxx).
    line_basic_id: str | None = Field(default=None, validation_alias="LINE_BASIC_ID")
    database_url: str = Field(
        default="sqlite+aiosqlite:///./data/kizuna.db", validation_alias="DATABASE_URL"
    )
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=8080, ge=1, le=65535, validation_alias="PORT")
    secret_key: str = Field(validation_alias="KIZUNA_SECRET_KEY", min_length=32)
    # Public base URL of this server (QR images, tracked links); defaults to http://host:port.
    public_url: str | None = Field(default=None, validation_alias="KIZUNA_PUBLIC_URL")
    # Mount the LINE emulator at /emulator: on by default when no LINE credentials are set.
    emulator: bool | None = Field(default=None, validation_alias="KIZUNA_EMULATOR")
    # Prefix for every Redis key, so several installations (or test runs) can share a server.
    redis_prefix: str = Field(default="kizuna", validation_alias="KIZUNA_REDIS_PREFIX")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, validation_alias="KIZUNA_MAX_BODY_BYTES")
    # Event processing: concurrent users handled per process, attempts before parking.
    worker_concurrency: int = Field(default=16, ge=1, le=1000, validation_alias="KIZUNA_WORKER_CONCURRENCY")
    max_event_attempts: int = Field(default=3, ge=1, le=20, validation_alias="KIZUNA_MAX_EVENT_ATTEMPTS")
    # A worker's hold on a customer's events; a killed worker's hold lapses after this.
    source_lock_seconds: float = Field(default=10.0, ge=1, le=300, validation_alias="KIZUNA_SOURCE_LOCK_SECONDS")
    # A worker that makes no progress on one customer's event for this long loses its hold
    # on the customer, so another worker can take over (the stuck one cannot commit then).
    event_timeout_seconds: float = Field(default=60.0, ge=1, le=3600, validation_alias="KIZUNA_EVENT_TIMEOUT")
    # A delivery claimed this long ago by a worker that has not finished it is sent again
    # (with the same retry key); keep it above KIZUNA_LINE_TIMEOUT × 4 plus backoff.
    delivery_claim_seconds: float = Field(default=60.0, ge=1, le=3600, validation_alias="KIZUNA_DELIVERY_CLAIM_SECONDS")
    # A campaign batch whose claim was not renewed for this long belongs to a sender that died (a live
    # one renews it every third of this); another worker sends it again with the same retry key (LINE
    # answers 409 if the first attempt got through). Also a narrowcast stage's lease.
    campaign_claim_seconds: float = Field(default=30.0, ge=1, le=3600, validation_alias="KIZUNA_CAMPAIGN_CLAIM_SECONDS")
    # Sending rounds a worker runs at once (each claims up to 8 batches): more keep more requests in
    # flight while others wait on the database; each round takes a database connection to claim
    # and to record (the pool holds 20).
    campaign_senders: int = Field(default=8, ge=1, le=16, validation_alias="KIZUNA_CAMPAIGN_SENDERS")
    # `auto` campaigns of identical content go by narrowcast to a LINE audience from this many queued
    # recipients (one request per variant instead of one per 500), by multicast below
    narrowcast_threshold: int = Field(default=100_000, ge=50, validation_alias="KIZUNA_NARROWCAST_THRESHOLD")
    sweep_interval_seconds: float = Field(default=15.0, gt=0, validation_alias="KIZUNA_SWEEP_INTERVAL")
    # Customers' spend deciles depend on everyone: recomputed this often by one of the workers
    # (storage/customer_metrics.py; orders keep everything else current at once).
    decile_refresh_seconds: float = Field(default=3600.0, ge=1, validation_alias="KIZUNA_DECILE_REFRESH")
    line_timeout_seconds: float = Field(default=10.0, gt=0, validation_alias="KIZUNA_LINE_TIMEOUT")
    # The retention purge (campaigns/retention.py): daily from this hour in the shop's zone, by one
    # worker of all; a worker looks whether it is due every `retention_look_seconds`.
    retention_hour: int = Field(default=4, ge=0, le=23, validation_alias="KIZUNA_RETENTION_HOUR")
    retention_look_seconds: float = Field(default=60.0, gt=0, le=3600, validation_alias="KIZUNA_RETENTION_LOOK")
    # LINE's rate limits by endpoint (bot/ratelimit.py has LINE's published ones): overrides as
    # "multicast=200,push=2000,broadcast=60/h"; with REDIS_URL every worker shares them.
    line_rate_limits: str = Field(default="", validation_alias="KIZUNA_LINE_RATE_LIMITS")
    # While Redis is unreachable each process paces at this share of the limits on its own:
    # set it to 1 / the number of processes that send (serve and worker).
    line_rate_fallback_share: float = Field(default=0.25, gt=0, le=1, validation_alias="KIZUNA_LINE_RATE_FALLBACK_SHARE")
    log_level: str = Field(default="INFO", validation_alias="KIZUNA_LOG_LEVEL")
    # The staff console (/console): a session ends after this long without a request (idle)
    # and this long after its login whatever happens (absolute).
    session_idle_timeout_seconds: float = Field(default=1800.0, ge=60, le=86_400, validation_alias="KIZUNA_SESSION_IDLE_TIMEOUT")
    session_max_age_seconds: float = Field(default=43_200.0, ge=300, le=30 * 86_400, validation_alias="KIZUNA_SESSION_MAX_AGE")
    # Console login throttling: after this many failures within the window, for one e-mail
    # address or from one client address, further attempts are refused (429) until it passes.
    login_max_failures: int = Field(default=5, ge=1, le=1000, validation_alias="KIZUNA_LOGIN_MAX_FAILURES")
    login_throttle_seconds: float = Field(default=300.0, ge=10, le=86_400, validation_alias="KIZUNA_LOGIN_THROTTLE_WINDOW")
    # Behind a reverse proxy: take the client address from the last X-Forwarded-For entry
    # (the one your proxy added); off, it is the TCP peer. Only turn on behind a proxy.
    trust_forwarded_for: bool = Field(default=False, validation_alias="KIZUNA_TRUST_FORWARDED_FOR")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://", "sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://...")
        # Accept the plain forms people paste and use the async drivers we ship.
        if value.startswith("sqlite://"):
            value = "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
        elif value.startswith(("postgresql://", "postgres://")):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("line_rate_limits")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)  # raises ValueError with the item at fault
        return value

    @field_validator("line_api_base_url", "line_data_api_base_url", "line_login_base_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials_together(self) -> "Settings":
        if bool(self.line_channel_secret) != bool(self.line_channel_access_token):
            missing = "LINE_CHANNEL_SECRET" if not self.line_channel_secret else "LINE_CHANNEL_ACCESS_TOKEN"
            raise ValueError(f"{missing}: is required when the other LINE credential is set")
        if bool(self.line_login_channel_id) != bool(self.line_login_channel_secret):
            missing = "LINE_LOGIN_CHANNEL_ID" if not self.line_login_channel_id else "LINE_LOGIN_CHANNEL_SECRET"
            raise ValueError(f"{missing}: is required when the other LINE Login setting is set")
        if self.emulator is None:
            self.emulator = not self.line_channel_secret
        if not self.line_channel_secret:
            self.line_channel_secret = EMULATOR_CHANNEL_SECRET
            self.line_channel_access_token = EMULATOR_ACCESS_TOKEN
        if self.emulator:
            # The mounted emulator answers on this server unless told otherwise.
            local = f"http://{self.host}:{self.port}/emulator"
            if "line_api_base_url" not in self.model_fields_set:
                self.line_api_base_url = local
            if "line_data_api_base_url" not in self.model_fields_set:
                self.line_data_api_base_url = local
            if "line_login_base_url" not in self.model_fields_set:
                self.line_login_base_url = local
            if not self.line_login_channel_id:
                self.line_login_channel_id = EMULATOR_LOGIN_CHANNEL_ID
                self.line_login_channel_secret = EMULATOR_LOGIN_CHANNEL_SECRET
        return self

    @property
    def embedded(self) -> bool:
        """One process, in-process queues: the default when REDIS_URL is unset."""
        return self.redis_url is None

    @property
    def line_rate_limit_table(self) -> dict[str, float]:
        """Requests per second by LINE endpoint: LINE's published limits, then the overrides."""
        return LINE_RATE_LIMITS | parse_rate_limits(self.line_rate_limits)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def line_login_enabled(self) -> bool:
        """Whether friend-add source links can work (a LINE Login channel is configured)."""
        return bool(self.line_login_channel_id and self.line_login_channel_secret)

    @property
    def add_friend_url(self) -> str | None:
        """Where a person who is not a friend yet is sent to add the account."""
        if self.emulator and not self.line_basic_id:
            return self.line_login_base_url + "/"  # the emulator's chat page, where the user follows
        # LINE's add-friend URL scheme takes the basic id with its @ percent-encoded.
        return f"https://line.me/R/ti/p/{quote(self.line_basic_id, safe='')}" if self.line_basic_id else None

    @property
    def line_connected(self) -> bool:
        """Whether real LINE credentials are set (not the emulator's stand-ins): then the
        console holds real customers' data and admins must have two-factor authentication."""
        return self.line_channel_secret != EMULATOR_CHANNEL_SECRET

    @property
    def https(self) -> bool:
        """Whether the public URL is https (console cookies are then `__Host-` and Secure)."""
        return self.base_url.startswith("https://")

    @property
    def sqlite_path(self) -> Path | None:
        if not self.database_url.startswith("sqlite"):
            return None
        path = self.database_url.split(":///", 1)[1]
        return None if path in ("", ":memory:") else Path(path)


def load_settings(**overrides) -> Settings:
    """Build settings, turning validation errors into one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    fields = Settings.model_fields
    lines = []
    for error in exc.errors():
        loc = error["loc"][0] if error["loc"] else ""
        field = fields.get(str(loc))
        name = field.validation_alias if field is not None else str(loc)
        message = error["msg"].removeprefix("Value error, ")
        if not loc and ":" in message:  # model-level errors name their variable first
            lines.append(f"setting {message}")
            continue
        if error["type"] == "missing":
            message = "is required but not set"
        lines.append(f"setting {name}: {message}")
    return "; ".join(lines)
