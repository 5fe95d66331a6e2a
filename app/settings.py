"""All configuration in one pydantic-settings class: environment variables and `.env`."""

import ssl
import sys
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    SkipValidation,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.durations import parse_duration_ms, parse_size_bytes
from core.fixed import FIXED_KINDS
from core.sessions import SESSION_KIND
from core.windows import Window, WindowParser, parse_windows

DEFAULT_BROKER = "127.0.0.1:9092"
# (session timeout, heartbeat interval, rebalance timeout): Apache Kafka's own consumer
# defaults for the first two, faust's for the third; tansu waits out the session and
# rebalance timeouts on a group's first join, so they are short there.
KAFKA_GROUP_TIMEOUTS_MS = (45_000, 3_000, 60_000)
TANSU_GROUP_TIMEOUTS_MS = (10_000, 1_000, 3_000)
Duration = Annotated[int, NoDecode]
# The window kinds WINDOWS may name, by prefix, each with its form.
WINDOW_KINDS: dict[str, tuple[str, WindowParser]] = {**FIXED_KINDS, **SESSION_KIND}


# The smallest value of a duration setting, and what to say below it. IDLE_TIMEOUT: a
# lease lasts 2 x IDLE_TIMEOUT and is renewed every IDLE_TIMEOUT / 2 across two hops
# (app.idleness); below a second, renewals could arrive after it ran out.
_LEAST_MS = {
    "dedup_horizon": (86_400_000, "must be at least 24h"),
    "idle_timeout": (1_000, "must be at least 1s"),
    "max_future_skew": (1, "must be positive"),
}


class Settings(BaseSettings):
    """Every variable of SPEC.md's Configuration table, parsed and validated at start."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True,
                                      arbitrary_types_allowed=True)

    kafka_broker: str | None = None
    app_id: str = Field("orderstream", pattern=r"^[A-Za-z0-9._-]+$")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_advertised_url: str | None = None
    data_dir: Path = Path("./data")
    orders_topic: str = Field("orders", pattern=r"^[A-Za-z0-9._-]+$")
    buyer_totals_topic: str = Field("buyer-totals", pattern=r"^[A-Za-z0-9._-]+$")
    window_results_topic: str = Field("window-results", pattern=r"^[A-Za-z0-9._-]+$")
    topic_partitions: int = Field(4, ge=1, le=1024)
    windows: Annotated[tuple[Window, ...], NoDecode, SkipValidation] = parse_windows(
        "tumble:10s,hop:1m/10s", WINDOW_KINDS
    )
    allowed_lateness: Duration = 5_000
    idle_timeout: Duration = 30_000
    dedup_horizon: Duration = 7 * 86_400_000
    window_retention: Duration = 3_600_000
    # An order_time further ahead of the worker's clock than this is invalid (DLQ).
    max_future_skew: Duration = 3_600_000
    # a larger orders message is invalid (DLQ), and so is a buyer name over 256 characters
    max_message_bytes: Annotated[int, NoDecode] = 1024 * 1024
    print_sink: bool = True
    # 0 turns deduplication off, for benchmarks: exact repeats then count again (a replay
    # from an old offset still counts nothing twice: offsets are tracked regardless).
    dedup: bool = True
    datagen_rps: float = Field(0.0, ge=0)
    datagen_rows: int = Field(0, ge=0)
    api_token: str | None = None
    # Set by `make run` and the tests: the broker keeps nothing across restarts, so
    # local state that is ahead of an empty changelog is discarded, not an error.
    embedded_broker: bool = False
    # Largest number of orders handed to the job at once.
    batch_max_orders: int = Field(1000, ge=1, le=100_000)
    # Live-push clients per worker (each holds a socket); beyond it the streams answer 503.
    sse_max_clients: int = Field(1000, ge=1, le=100_000)
    # Replication factor of the topics the service creates; unset: min(3, brokers).
    topic_replication: int | None = Field(None, ge=1, le=32)
    # The consumer group's timeouts (faust's broker_session_timeout and the like, which
    # faust itself reads from BROKER_* variables); unset: values that suit Apache Kafka,
    # or with EMBEDDED_BROKER tansu's (it waits them out on a group's first join).
    kafka_session_timeout: Duration | None = None
    kafka_heartbeat_interval: Duration | None = None
    kafka_rebalance_timeout: Duration | None = None
    # Each batch a Kafka transaction: `auto` where the broker has them (not with
    # EMBEDDED_BROKER: tansu has none), `on` (refuse to start without), `off`.
    kafka_transactions: Literal["auto", "on", "off"] = "auto"
    # How every Kafka client of the service connects: the worker's consumer group, its
    # producers, admin and readers, datagen and reset.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None  # unset with SSL: the system's CAs

    @field_validator(
        "allowed_lateness", "idle_timeout", "dedup_horizon", "window_retention", "max_future_skew",
        "kafka_session_timeout", "kafka_heartbeat_interval", "kafka_rebalance_timeout",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration_ms(value) if isinstance(value, str) else value

    @field_validator("max_message_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return parse_size_bytes(value) if isinstance(value, str) else value

    @field_validator("max_message_bytes")
    @classmethod
    def _size_in_range(cls, value: int) -> int:
        if not 1024 <= value <= 32 * 1024 * 1024:
            raise ValueError("must be between 1KiB and 32MiB")
        return value

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, value: Any) -> Any:
        return parse_windows(value, WINDOW_KINDS) if isinstance(value, str) else value

    @field_validator("kafka_broker", "api_token", "topic_replication", "kafka_sasl_mechanism",
                     "kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_cafile",
                     "kafka_session_timeout", "kafka_heartbeat_interval",
                     "kafka_rebalance_timeout", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dedup_horizon", "idle_timeout", "max_future_skew")
    @classmethod
    def _at_least(cls, value: int, info: ValidationInfo) -> int:
        least_ms, message = _LEAST_MS[info.field_name or ""]
        if value < least_ms:
            raise ValueError(message)
        return value

    @model_validator(mode="after")
    def _retention_covers_windows(self) -> "Settings":
        needed_ms = max(w.reach_ms for w in self.windows) + self.allowed_lateness
        if self.window_retention < needed_ms:
            raise ValueError(
                f"WINDOW_RETENTION: must be at least the largest window (or session gap) "
                f"plus ALLOWED_LATENESS ({needed_ms} ms)"
            )
        return self

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @model_validator(mode="after")
    def _security_complete(self) -> "Settings":
        sasl = self.kafka_security_protocol.startswith("SASL_")
        given = [name for name, value in (
            ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
            ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password)) if value is not None]
        if sasl and len(given) < 3:
            missing = {"KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL: {self.kafka_security_protocol} needs "
                             f"{', '.join(sorted(missing - set(given)))}")
        if not sasl and given:
            raise ValueError(f"{given[0]}: set, but KAFKA_SECURITY_PROTOCOL is "
                             f"{self.kafka_security_protocol} (SASL_PLAINTEXT or SASL_SSL "
                             f"use it)")
        if self.kafka_ssl_cafile is not None and not self.kafka_security_protocol.endswith(
                "SSL"):
            raise ValueError(f"KAFKA_SSL_CAFILE: set, but KAFKA_SECURITY_PROTOCOL is "
                             f"{self.kafka_security_protocol} (SSL or SASL_SSL use it)")
        return self

    @cached_property
    def _ssl_context(self) -> ssl.SSLContext:
        """One TLS context for every client (its CA file read once)."""
        return ssl.create_default_context(
            cafile=None if self.kafka_ssl_cafile is None else str(self.kafka_ssl_cafile))

    @property
    def kafka_client(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client of the service connects with."""
        options: dict[str, Any] = {"bootstrap_servers": self.broker_urls,
                                   "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.endswith("SSL"):
            options["ssl_context"] = self._ssl_context
        if self.kafka_sasl_password is not None:
            options.update(sasl_mechanism=self.kafka_sasl_mechanism,
                           sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.kafka_sasl_password.get_secret_value())
        return options

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> "Settings":
        session_ms, heartbeat_ms, _ = self.group_timeouts_ms
        if heartbeat_ms * 3 > session_ms:
            raise ValueError(f"KAFKA_HEARTBEAT_INTERVAL: must be at most a third of the "
                             f"session timeout ({session_ms} ms)")
        return self

    @property
    def group_timeouts_ms(self) -> tuple[int, int, int]:
        """The group's session timeout, heartbeat interval and rebalance timeout."""
        defaults = TANSU_GROUP_TIMEOUTS_MS if self.embedded_broker else KAFKA_GROUP_TIMEOUTS_MS
        chosen = (self.kafka_session_timeout, self.kafka_heartbeat_interval,
                  self.kafka_rebalance_timeout)
        session, heartbeat, rebalance = (
            default if value is None else value for value, default in zip(
                chosen, defaults, strict=True))
        return session, heartbeat, rebalance

    @property
    def broker_urls(self) -> list[str]:
        """`host:port` addresses of the broker, `kafka://` stripped."""
        raw = self.kafka_broker or DEFAULT_BROKER
        parts = (p.strip() for p in raw.replace(";", ",").split(","))
        return [p.removeprefix("kafka://") for p in parts if p]

    @property
    def advertised_url(self) -> str:
        """How other workers reach this one."""
        return self.api_advertised_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def dlq_topic(self) -> str:
        return f"{self.orders_topic}-dlq"

    @property
    def late_topic(self) -> str:
        return f"{self.orders_topic}-late"

    @property
    def state_dir(self) -> Path:
        """Where this app id keeps its RocksDB stores."""
        return self.data_dir / self.app_id


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable and what is wrong with it."""
    parts = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "invalid setting " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, or exit with one line naming the bad variable (no traceback)."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        sys.exit(f"orderstream: {describe_error(error)}")
