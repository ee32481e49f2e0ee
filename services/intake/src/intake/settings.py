from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mm_shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """All of intake's configuration; environment variables prefixed ``INTAKE_``."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    http_port: int = 8000
    #: Open311 api_keys accepted for POSTs (comma-separated in the environment). Empty means
    #: nobody may post: production sets its keys explicitly.
    api_keys: list[str] = Field(default_factory=list)
    jurisdiction: str = "leipzig"
    public_base_url: str = "http://127.0.0.1:8000"
    consumer_group: str = "intake"
