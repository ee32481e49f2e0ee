"""Web's own limits on its public forms: so many submissions per client address and per e-mail
address within a sliding window, in memory (per instance: several instances behind one balancer
each allow the limit; the services limit their APIs too)."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from starlette.requests import Request


class SlidingWindow:
    """At most ``limit`` hits per key within ``window_s``. Remembers at most ``max_keys`` keys
    (the least recently used go first), so a flood of addresses cannot fill the memory."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now (the hit is counted)."""
        now = self.clock()
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        self._hits[key] = hits
        if len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return max(1, int(hits[0] + self.window_s - now) + 1)
        hits.append(now)
        return None


def client_address(request: Request, trusted_proxies: Sequence[str]) -> str:
    """The citizen's address: the peer, or, behind a trusted reverse proxy, the last address in
    X-Forwarded-For that is not itself a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, trusted_proxies):
        return peer
    forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",")]
    for address in reversed([a for a in forwarded if a]):
        if not _trusted(address, trusted_proxies):
            return address
    return peer


def _trusted(address: str, trusted_proxies: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted_proxies)
