from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from mm_shared.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    """All of the notifier's configuration; environment variables prefixed ``NOTIFIER_``."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    http_port: int = 8002
    consumer_group: str = "notifier"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: Implicit TLS ("tls") usually listens on port 465.
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    mail_from: str = "Mängelmelder Leipzig <noreply@maengelmelder.leipzig.example>"
    #: Where citizens reach the notifier's public links (unsubscribe, preferences).
    public_base_url: str = "http://127.0.0.1:8002"
    #: Where citizens follow their report (the reporter's own mails add ``?token=…``).
    tracking_base_url: str = "http://127.0.0.1:8000/api/v1/reports"
    #: The web front's stylesheet, linked by the notifier's pages (preferences, unsubscribe,
    #: alert confirmation) so that they look like the rest of the site; unset: plain pages.
    stylesheet_url: str | None = None
    #: Area alerts: the largest circle one may subscribe to.
    alert_max_radius_m: float = 5000.0
    #: The city app's push backend: every status change is POSTed there, signed.
    webhook_url: str | None = None
    webhook_secret: SecretStr = SecretStr("")
    #: Bearer token for the operators' endpoints (parked notifications); empty disables them.
    ops_token: SecretStr = SecretStr("")
    max_attempts: int = 8
    #: Every instance writes a heartbeat this often; claims of an instance silent for
    #: ``instance_dead_after_s`` are taken back by the others (or by itself once restarted).
    #: An instance whose own heartbeat has not reached the database for half that time stops
    #: sending, so two live instances never send the same notification.
    instance_heartbeat_interval_s: float = 5.0
    instance_dead_after_s: float = 30.0
    #: Deliveries in flight at once (each e-mail worker keeps its own SMTP connection). Each
    #: connection waits for the server's answers and for its last outcome to be recorded, so
    #: more of them keep the notifier busy; relays cap connections per client (Exchange's
    #: receive connectors at 20 by default, Postfix at 50).
    workers: int = 16
    #: Reporters' contact data is erased this long after their report was closed (GDPR).
    contact_retention_days: float = 90.0
    contact_erasure_interval_s: float = 3600.0
