"""Web's one way to the platform: the services' public HTTP APIs (intake's city-app API and
Open311, geo-router's areas and routes, the notifier's citizen endpoints). Web keeps no data of
its own; what it shows, it asks for."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx

from web.settings import WebSettings

if TYPE_CHECKING:
    from web.cities import City

log = logging.getLogger(__name__)
Service = Literal["intake", "geo_router", "notifier"]
#: A photo to pass on: (file name, content, content type).
Upload = tuple[str, bytes, str]


class ServiceUnavailable(Exception):
    """A service did not answer, or answered that it is away (502/503/504): web shows a page
    saying so and asking to try again shortly, never a stack trace."""

    def __init__(self, service: Service, retry_after_s: int = 5) -> None:
        super().__init__(service)
        self.service = service
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_codes(self) -> list[str]:
        """The codes of the platform's error shape ``{"errors": [{"code", ...}]}``."""
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            return [str(e.get("code")) for e in self.body["errors"] if isinstance(e, dict)]
        return []


class Services:
    """One pooled HTTP client per service. Citizen and staff calls share :meth:`call`."""

    def __init__(self, settings: WebSettings, transport: httpx.AsyncBaseTransport | None = None):
        timeout = httpx.Timeout(settings.upstream_timeout_s, connect=3.0)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.settings = settings
        self.clients: dict[Service, httpx.AsyncClient] = {
            name: httpx.AsyncClient(
                base_url=url, timeout=timeout, limits=limits, transport=transport
            )
            for name, url in self._addresses(settings).items()
        }
        #: Per jurisdiction and level: when fetched, a digest of geo-router's answer, the
        #: parsed answer.
        self._areas: dict[tuple[str, str | None], tuple[float, bytes, dict[str, Any]]] = {}
        self._definitions: dict[str, tuple[float, dict[str, Any]]] = {}
        self.geocoder = (
            httpx.AsyncClient(base_url=settings.geocoder_url, timeout=timeout, transport=transport)
            if settings.geocoder_url
            else None
        )

    @staticmethod
    def _addresses(settings: WebSettings) -> dict[Service, str]:
        return {
            "intake": settings.intake_url,
            "geo_router": settings.geo_router_url,
            "notifier": settings.notifier_url,
        }

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        if self.geocoder is not None:
            await self.geocoder.aclose()

    async def call(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Sequence[tuple[str, Upload]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        try:
            response = await self.clients[service].request(
                method,
                path,
                params=params,
                json=json,
                data=data,
                files=files,
                headers=headers,
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(service) from exc
        if response.status_code in (502, 503, 504):
            retry = whole_number(response.headers.get("retry-after", ""))
            raise ServiceUnavailable(service, 5 if retry is None else retry)
        content_type = response.headers.get("content-type", "")
        body: Any = response.json() if "json" in content_type else response.content
        return Answer(response.status_code, body, response.headers)

    async def raw(
        self, service: Service, path: str, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """An answer as it came (photos): the caller passes it on."""
        try:
            return await self.clients[service].get(path, params=params)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(service) from exc

    async def areas(
        self,
        level: str | None = None,
        max_age_s: float = 300.0,
        jurisdiction: str | None = None,
    ) -> dict[str, Any]:
        """Geo-router's areas as GeoJSON, kept a few minutes: they change a few times a year,
        and the maps and forms ask for them on every page. An unchanged answer (the usual
        case) keeps the parsed object it already has: parsing all outlines' GeoJSON is costly, and
        the pages' caches built from it (see ``Citizen.outlines``) stay valid."""
        key = (jurisdiction or self.settings.jurisdiction, level)
        cached = self._areas.get(key)
        if cached and time.monotonic() - cached[0] < max_age_s:
            return cached[2]
        params = {"jurisdiction": key[0]} | ({"level": level} if level else {})
        response = await self.raw("geo_router", "/v1/areas", params=params)
        if response.status_code != 200:
            raise ServiceUnavailable("geo_router")
        digest = hashlib.sha256(response.content).digest()
        areas = cached[2] if cached and cached[1] == digest else dict(response.json())
        self._areas[key] = (time.monotonic(), digest, areas)
        return areas

    async def service_definitions(self, max_age_s: float = 3600.0) -> dict[str, dict[str, Any]]:
        """Intake's Open311 service definitions of the categories that ask extra questions
        (the catalogue changes with a deployment, so an hour's cache is plenty)."""
        cached = self._definitions.get("")
        if cached and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        listed = await self.call("intake", "GET", "/open311/v2/services.json")
        if not listed.ok:
            raise ServiceUnavailable("intake")
        found: dict[str, dict[str, Any]] = {}
        for service in listed.body:
            if service.get("metadata"):
                code = service["service_code"]
                answer = await self.call("intake", "GET", f"/open311/v2/services/{code}.json")
                if answer.ok:
                    found[code] = answer.body
        self._definitions[""] = (time.monotonic(), found)
        return found

    async def warm_up(self) -> None:
        """Fill the caches the pages read (areas, service definitions) before the first
        visitor, when the services answer already; otherwise the first page fills them."""
        try:
            await self.areas()
            await self.service_definitions()
        except ServiceUnavailable as away:
            log.info("%s not reachable yet: caches fill on first use", away.service)

    async def geocode(self, address: str, city: City | None = None) -> tuple[float, float] | None:
        """The first hit of the configured geocoder for ``address`` in the city (the default
        one: with ``WEB_GEOCODER_SUFFIX``; another: its name), or None."""
        if self.geocoder is None:
            return None
        suffix = self.settings.geocoder_suffix
        if city is not None and city.code != self.settings.jurisdiction:
            suffix = f", {city.short_name}"
        query = address + suffix
        try:
            answer = await self.geocoder.get(
                "/search", params={"q": query, "format": "jsonv2", "limit": 1}
            )
            hits = answer.json() if answer.status_code == 200 else []
        except (httpx.TransportError, ValueError):
            return None
        if not hits:
            return None
        return float(hits[0]["lat"]), float(hits[0]["lon"])


def whole_number(text: str, max_digits: int = 12) -> int | None:
    """ASCII digits only: ``str.isdigit`` also passes "²" and "٣", on which ``int`` fails or
    reads what no one typed, and ``int`` refuses more than 4,300 digits."""
    if text.isascii() and text.isdigit() and len(text) <= max_digits:
        return int(text)
    return None
