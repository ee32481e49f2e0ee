"""Turning an Open311 ``address_string`` into coordinates, through a Nominatim-compatible
search service (the city's own or OpenStreetMap's; configured by ``INTAKE_GEOCODER_URL``).

Only used when a report brings an address and no coordinates: everything after it (the
outside-the-city check, routing) works on the coordinates found.
"""

from __future__ import annotations


class GeocoderUnavailable(Exception):
    """The geocoding service did not answer usefully: not the reporter's fault."""


class NominatimGeocoder:
    def __init__(self, base_url: str, *, city: str, user_agent: str, timeout_s: float) -> None:
        # Imported only where a geocoder is configured: httpx brings its command line's
        # libraries (rich, pygments) into the process.
        import httpx

        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, headers={"user-agent": user_agent}
        )
        self._city = city

    async def locate(self, address: str) -> tuple[float, float] | None:
        """(lat, long) of the best match for ``address`` in the city, or None if none."""
        # "Markt 1" is meant in this city; "Marienplatz 1, München" names its own place.
        query = address if "," in address else f"{address}, {self._city}"
        import httpx

        try:
            response = await self._client.get(
                "/search", params={"q": query, "format": "jsonv2", "limit": 1}
            )
            response.raise_for_status()
            found = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise GeocoderUnavailable(str(exc)) from exc
        if not found:
            return None
        try:
            return float(found[0]["lat"]), float(found[0]["lon"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GeocoderUnavailable(f"unexpected answer: {found[0]!r}") from exc

    async def close(self) -> None:
        await self._client.aclose()
