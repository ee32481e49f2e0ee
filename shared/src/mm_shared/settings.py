"""Configuration every service shares. Each service subclasses it with its own env prefix
(``INTAKE_``, ``GEO_ROUTER_``, ``NOTIFIER_``) so that one process reads exactly one prefix."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The levels of the standard library's logging, as a setting accepts them.
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MM_", extra="ignore")

    #: Carries the database password: left out of the settings' repr.
    database_url: str = Field(
        default="postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/mangelmelder", repr=False
    )
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    #: How long a waiting fetch may idle at the broker; small keeps latency low (Tansu answers a
    #: waiting fetch only when this runs out).
    kafka_fetch_max_wait_ms: int = 10
    #: What the wait of a service's main consumer grows to once nothing came for a while, so
    #: that an idle stack does not fetch a hundred times a second; the first message after a
    #: quiet period waits up to this long at each hop.
    kafka_idle_fetch_max_wait_ms: int = 500
    #: The same for topics of rare events (configuration, outlines, office directory). Every
    #: waiting consumer costs the broker and the client a fetch per wait (what that costs at
    #: 10 ms: docs/architecture.md), for events that come a few times a day.
    kafka_rare_events_fetch_max_wait_ms: int = 500
    #: Polling of tables for work another process left (outbox rows of other writers or of a
    #: failed relay, due notifications): every 0.5 s while there is work, growing to this once
    #: there was none for a while. Work of the process itself wakes its poller at once.
    idle_poll_interval_s: float = 2.0
    log_level: LogLevel = "INFO"
