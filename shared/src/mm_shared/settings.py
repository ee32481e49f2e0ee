"""Configuration every service shares. Each service subclasses it with its own env prefix
(``INTAKE_``, ``GEO_ROUTER_``, ``NOTIFIER_``) so that one process reads exactly one prefix."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MM_", extra="ignore")

    database_url: str = "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/mangelmelder"
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
    #: waiting consumer costs the broker and the client a fetch per wait: at 10 ms about a sixth
    #: of a core between them on the local broker, for events that come a few times a day.
    kafka_rare_events_fetch_max_wait_ms: int = 500
    #: Polling of tables for work another process left (outbox rows of other writers or of a
    #: failed relay, due notifications): every 0.5 s while there is work, growing to this once
    #: there was none for a while. Work of the process itself wakes its poller at once.
    idle_poll_interval_s: float = 2.0
    log_level: str = "INFO"
