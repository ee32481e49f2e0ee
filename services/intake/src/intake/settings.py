from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from mm_shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """All of intake's configuration; environment variables prefixed ``INTAKE_``."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    http_port: int = 8000
    #: Open311 api_keys accepted for POSTs (comma-separated in the environment). Empty means
    #: nobody may post: production sets its keys explicitly.
    api_keys: list[SecretStr] = Field(default_factory=list)
    #: The default jurisdiction: where clients that name none (old ones) and staff accounts
    #: created without one belong while no loaded outline decides. Reports go to the loaded
    #: jurisdiction that covers their place (or the one they name); see docs/operations.md.
    jurisdiction: str = "leipzig"
    public_base_url: str = "http://127.0.0.1:8000"
    #: Web origins whose pages may call the API from the browser (the city's web app, a staff
    #: front end), e.g. ["https://maengelmelder.leipzig.de"]. Empty: no cross-origin calls.
    cors_origins: list[str] = Field(default_factory=list)
    consumer_group: str = "intake"
    timezone: str = "Europe/Berlin"
    #: Open311 discovery: who runs this endpoint and where keys are requested.
    contact: str = "Stadt Leipzig, Mängelmelder, maengelmelder@leipzig.example"
    key_service: str = "Stadt Leipzig, Amt für Digitalisierung (API-Schlüssel auf Anfrage)"
    endpoint_type: Literal["production", "test"] = "production"
    #: A Nominatim-compatible search service for Open311 reports that bring only an
    #: address_string (e.g. https://nominatim.openstreetmap.org); unset: such reports are
    #: refused with a clear error asking for coordinates.
    geocoder_url: str | None = None
    #: Appended to an address without a comma, so that "Markt 1" is found in this city.
    geocoder_city: str = "Leipzig"
    geocoder_timeout_s: float = 3.0
    #: Staff signing in at the city's OIDC provider: its issuer, the audience of the access
    #: tokens and the JWKS address. All three set: bearer JWTs are accepted beside local tokens.
    oidc_issuer: str | None = None
    oidc_audience: str = "maengelmelder"
    oidc_jwks_url: str | None = None
    #: Token claims naming the member's office codes and roles; the role that sees everything.
    oidc_offices_claim: str = "offices"
    oidc_roles_claim: str = "roles"
    oidc_admin_role: str = "maengelmelder-admin"
    #: The claim naming the jurisdiction a member works for (office codes are unique only
    #: within one); without it: ``jurisdiction`` (an admin without it: all of them).
    oidc_jurisdiction_claim: str = "jurisdiction"
    #: How long a local staff token (``intake staff-token``) is valid; then it answers 401.
    staff_token_ttl_days: float = Field(default=90.0, gt=0)
    #: Where uploaded photos are kept (content-addressed files).
    photo_dir: str = "var/photos"
    #: Photos whose display size and thumbnail this process makes at once, in the background
    #: (a submission waits only for the photo's check and its stripped original). 0: none, for
    #: an instance that leaves the work to another one sharing ``photo_dir`` (which looks for
    #: such photos every 30 s).
    photo_variant_workers: int = Field(default=1, ge=0)
    #: A report still ``received`` after this long is published again.
    resubmit_after_s: float = 120.0
    #: Open reports of the same category closer than this are offered as duplicates.
    duplicate_radius_m: float = 50.0
    #: Service levels: days to resolve per category code, overriding the catalogue's defaults
    #: (``intake.catalogue.SERVICE_LEVEL_DAYS``), e.g. {"001": 10}. They set a new report's
    #: expected date (Open311 ``expected_datetime``) and when a ticket counts as overdue.
    service_level_days: dict[str, float] = Field(default_factory=dict)
    #: Office reminders: sent daily at this local hour, about tickets not accepted within
    #: N working days and tickets in progress for more than M days.
    reminder_hour: int = 7
    reminder_accept_within_working_days: int = 3
    reminder_work_within_days: float = 14.0
    #: Public holidays (the `holidays` package's country and subdivision codes: Saxony for
    #: Leipzig) do not count as working days, and no reminders go out on them or at weekends.
    holidays_country: str = "DE"
    holidays_subdivision: str | None = "SN"
    #: Signs the reporters' tokens (HMAC of the report id): the same on every instance, kept
    #: secret, at least 32 characters. Required to serve: a random one per process would
    #: make one instance's tokens invalid at the next, and a built-in one public.
    reporter_token_secret: SecretStr | None = None
    #: How long after ``resolved`` a reporter may say "not fixed" and reopen the report.
    reopen_within_days: int = 28
    #: How long intake keeps a reporter's contact event after publishing it, only so that
    #: ``intake reannounce`` can publish it again when a broker lost it before the notifier
    #: had it. Like the private topic's retention: a loss found later cannot be repaired by
    #: the broker either. Erased at the reporter's request before that.
    contact_kept_days: float = Field(default=7.0, gt=0)
    #: Rate limits of the public POSTs (reports, followers, Open311 requests): at most
    #: ``rate_limit_per_address`` per client address and ``rate_limit_per_email`` per e-mail
    #: address within ``rate_limit_window_s`` seconds; 0 switches a limit off.
    rate_limit_per_address: int = 120
    rate_limit_per_email: int = 20
    rate_limit_window_s: float = 3600.0
    #: Reverse proxies (addresses or networks) whose X-Forwarded-For names the client; from
    #: anybody else the header is ignored (it could be forged to dodge the limits).
    trusted_proxies: list[str] = Field(default_factory=list)
