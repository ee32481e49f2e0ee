from pydantic_settings import SettingsConfigDict

from mm_shared.settings import ServiceSettings


class GeoRouterSettings(ServiceSettings):
    """All of geo-router's configuration; environment variables prefixed ``GEO_ROUTER_``."""

    model_config = SettingsConfigDict(env_prefix="GEO_ROUTER_", extra="ignore")

    http_port: int = 8001
    consumer_group: str = "geo-router"
    default_jurisdiction: str = "leipzig"
    #: Most reports routed in one transaction.
    batch_max_records: int = 1000
