from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mm_shared.settings import LogLevel


class WebSettings(BaseSettings):
    """All of web's configuration; environment variables prefixed ``WEB_``. Web has no database
    and no broker: only the services' public addresses."""

    model_config = SettingsConfigDict(env_prefix="WEB_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8003
    log_level: LogLevel = "INFO"
    #: The services' public HTTP APIs (the same the city's app uses).
    intake_url: str = "http://127.0.0.1:8000"
    geo_router_url: str = "http://127.0.0.1:8001"
    notifier_url: str = "http://127.0.0.1:8002"
    #: Where citizens reach web (links in pages and feeds).
    public_base_url: str = "http://127.0.0.1:8003"
    jurisdiction: str = "leipzig"
    #: Map tiles, e.g. the city's tile server or OpenStreetMap's (under its tile usage policy:
    #: ``https://tile.openstreetmap.org/{z}/{x}/{y}.png``). Unset, the maps show the district
    #: outlines from geo-router as their base map, so everything works offline.
    tile_url: str | None = None
    tile_attribution: str = ""
    #: A Nominatim-compatible geocoder (the city's own): with it, an address alone places a
    #: report. Unset (the local stack), the place comes from the map or coordinates.
    geocoder_url: str | None = None
    #: Added to every address searched, so "Markt 1" finds Leipzig's Markt.
    geocoder_suffix: str = ", Leipzig"
    #: A resolved report can be reported "not fixed" this long (intake decides; web says so).
    reopen_within_days: int = 28
    timezone: str = "Europe/Berlin"
    #: Signs CSRF tokens (and the staff console's sessions); the same for every instance. Unset,
    #: each start makes a random one (forms open across a restart must then be sent again).
    secret_key: SecretStr = SecretStr("")
    #: Cookies only over HTTPS; off in the local stack (plain HTTP on 127.0.0.1).
    cookie_secure: bool = False
    #: Seconds web waits for a service's answer.
    upstream_timeout_s: float = 10.0
    #: Web's own limit on the public form: submissions per client address and per e-mail address
    #: within the window (the services limit their APIs too).
    rate_limit_per_address: int = 20
    rate_limit_per_email: int = 10
    rate_limit_window_s: int = 3600
    #: Client addresses of reverse proxies whose X-Forwarded-For web believes.
    trusted_proxies: list[str] = []
    #: Form posts larger than this are refused (five photos of ≤ 10 MB and the fields).
    max_body_bytes: int = 51 * 2**20

    # The staff console (/staff/).
    #: A console session ends after this long without a request.
    staff_idle_timeout_s: int = 1800
    #: The city's identity provider (OpenID Connect, authorization code flow with PKCE). With
    #: issuer and client id set, the sign-in page offers it beside the token; intake must trust
    #: the same issuer (INTAKE_OIDC_*), since the console passes the access token on.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scope: str = "openid profile"
