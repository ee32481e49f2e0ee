"""Which city a request is about: by the path's first segment (``/koeln/…``), else by the host
name (``WEB_HOSTS``), else the configured default jurisdiction at ``/``. The cities are the
ones intake serves (``GET /api/v1/jurisdictions``, cached); without that list, the default
city alone."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from web.adapters.services import Services, ServiceUnavailable

log = logging.getLogger(__name__)

#: First path segments of web's own routes: never a city's prefix.
RESERVED = frozenset(
    {"static", "staff", "language", "healthz", "metrics", "reports", "alerts", "feeds", "photos"}
)
#: Under a city's prefix these stay web's (and the default city's) own.
NOT_PER_CITY = frozenset({"static", "staff", "language", "healthz", "metrics"})
SCOPE_KEY = "mm.city"


@dataclass(frozen=True)
class City:
    code: str
    #: As intake names it ("Stadt Köln"); the configured default's name without the list.
    name: str
    #: min_long, min_lat, max_long, max_lat; None: from the areas.
    bbox: tuple[float, float, float, float] | None = None
    disabled_service_codes: frozenset[str] = frozenset()
    #: The path prefix of its pages: "" at / (the default city, or by host name), "/koeln".
    base: str = ""

    @property
    def short_name(self) -> str:
        """The name in titles: "Köln" for "Stadt Köln"."""
        for article in ("Stadt ", "City of "):
            if self.name.startswith(article):
                return self.name[len(article) :]
        return self.name

    def at(self, base: str) -> City:
        return City(self.code, self.name, self.bbox, self.disabled_service_codes, base)


class Cities:
    """The cities intake serves, asked for at most every ``max_age_s``."""

    def __init__(
        self, services: Services, max_age_s: float = 300.0, unknown_retry_s: float = 10.0
    ) -> None:
        self.services = services
        settings = services.settings
        self.default_code = settings.jurisdiction
        self.hosts = {h.lower(): code for h, code in settings.hosts.items()}
        self._fallback = {self.default_code: City(self.default_code, settings.jurisdiction_name)}
        self._known: tuple[float, dict[str, City]] | None = None
        self._retry_at = 0.0
        #: Whether intake listed its jurisdictions (then reports name theirs when sent).
        self.listed = False
        self.max_age_s = max_age_s
        #: A path naming a city not (yet) known asks intake again after this long: a city
        #: onboarded a moment ago is served within seconds, a flood of wrong paths is not
        #: passed on.
        self.unknown_retry_s = unknown_retry_s

    async def known(self, max_age_s: float | None = None) -> dict[str, City]:
        cached = self._known
        max_age_s = self.max_age_s if max_age_s is None else max_age_s
        now = time.monotonic()
        if (cached and now - cached[0] < max_age_s) or now < self._retry_at:
            return self.last_known()
        cities = dict(self._fallback)
        try:
            answer = await self.services.call("intake", "GET", "/api/v1/jurisdictions")
        except ServiceUnavailable:
            # Meanwhile the last list known (or the default city); not one try per request.
            self._retry_at = now + self.unknown_retry_s
            return cached[1] if cached else cities
        if answer.ok and isinstance(answer.body, dict):
            self.listed = True
            for item in answer.body.get("jurisdictions", []):
                city = _city(item)
                if city is None or city.code in RESERVED:
                    log.warning("jurisdiction %r cannot have a path of its own", item)
                    continue
                cities[city.code] = city
        else:
            self.listed = False
        self._known = (time.monotonic(), cities)
        return cities

    async def resolve(self, scope: Scope) -> tuple[City, str | None]:
        """The city of a request, and the prefix to strip from its path (None: none)."""
        known = await self.known()
        path: str = scope["path"]
        first, _, rest = path.lstrip("/").partition("/")
        if first and first not in known and first not in RESERVED and "." not in first:
            known = await self.known(self.unknown_retry_s)
        per_city = rest.partition("/")[0] not in NOT_PER_CITY
        if first in known and first not in RESERVED and per_city:
            return known[first].at(f"/{first}"), f"/{first}"
        host = _host(scope)
        code = self.hosts.get(host, self.default_code)
        return (known.get(code) or known[self.default_code]), None

    def last_known(self) -> dict[str, City]:
        """The cities as last listed (the configured ones until a listing arrived)."""
        cached = self._known
        return cached[1] if cached else self._fallback

    def name_of(self, code: str) -> str:
        """A jurisdiction's name as last listed (its code if not known)."""
        city = self.last_known().get(code)
        return city.name if city else code

    def default(self) -> City:
        return self.last_known()[self.default_code]

    def elsewhere(self, request: Request) -> list[City]:
        """The other cities served (as last listed), each at the address of its pages from
        this host, on the pages at the root: a visitor who landed there on the wrong city's
        pages finds theirs. A city's pages under its prefix were chosen and stay its own."""
        current = city_of(request)
        if current.base:
            return []
        at_root = self.hosts.get(_host(request.scope), self.default_code)
        return [
            city.at("" if code == at_root else f"/{code}")
            for code, city in self.last_known().items()
            if code != current.code
        ]


def _city(item: Any) -> City | None:
    try:
        box = item.get("bbox")
        return City(
            code=str(item["code"]),
            name=str(item.get("name") or item["code"]),
            bbox=tuple(float(v) for v in box) if box and len(box) == 4 else None,  # type: ignore[arg-type]
            disabled_service_codes=frozenset(map(str, item.get("disabled_service_codes") or ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host: str = value.decode("latin-1")
            return host.rsplit(":", 1)[0].lower()
    return ""


def city_of(request: Request) -> City:
    city = request.scope.get(SCOPE_KEY)
    if isinstance(city, City):
        return city
    cities: Cities = request.app.state.cities
    return cities.default()


class CityScope:
    """Pure ASGI: puts the request's city into its scope and, for a city's prefix, moves the
    prefix into ``root_path`` so the routes (``/``, ``/reports``, …) serve every city alike."""

    def __init__(self, app: ASGIApp, cities: Cities) -> None:
        self.app = app
        self.cities = cities

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        city, prefix = await self.cities.resolve(scope)
        scope = dict(scope)
        scope[SCOPE_KEY] = city
        if prefix is not None:
            if scope["path"] == prefix:  # /koeln → /koeln/
                await _redirect(send, prefix + "/")
                return
            scope["root_path"] = scope.get("root_path", "") + prefix
        await self.app(scope, receive, send)


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 308,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
