"""Rate limits of the public POSTs, per client address and per e-mail address: sliding
windows in this process's memory (per instance; see docs/architecture.md for why that is
enough)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from starlette.requests import Request

#: Forgotten keys are swept after this many admissions (memory stays bounded by the keys
#: active within one window).
_SWEEP_EVERY = 10_000


class SlidingWindow:
    """At most ``limit`` admissions per key within any ``window_s`` seconds. Refusals are not
    counted: a client that keeps trying is let in again once its oldest admission expires."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}
        self._since_sweep = 0

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may be admitted again; 0 when it may now."""
        times = self._admitted.get(key)
        if not times:
            return 0.0
        now = self._clock()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window_s - now

    def admit(self, key: str) -> None:
        self._admitted.setdefault(key, deque()).append(self._clock())
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self._sweep()

    def _sweep(self) -> None:
        self._since_sweep = 0
        horizon = self._clock() - self.window_s
        for key in [k for k, times in self._admitted.items() if times[-1] <= horizon]:
            del self._admitted[key]


Address = IPv4Address | IPv6Address


class RateLimits:
    """Per client address and per e-mail address. The client address is the peer's, or, when
    the peer is one of ``trusted_proxies``, the last address in X-Forwarded-For that is not a
    trusted proxy (a client can write anything into the header, so only ours are believed)."""

    def __init__(
        self,
        *,
        per_address: int,
        per_email: int,
        window_s: float,
        trusted_proxies: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._by_address = SlidingWindow(per_address, window_s, clock) if per_address else None
        self._by_email = SlidingWindow(per_email, window_s, clock) if per_email else None
        self._trusted = [ip_network(p, strict=False) for p in trusted_proxies]

    def _is_trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def client_address(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        if not self._is_trusted(_parsed(peer)):
            return peer
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = _parsed(hop)
            if address is None:  # garbage: whoever wrote it is the client as far as we know
                break
            if not self._is_trusted(address):
                return str(address)
        return peer

    def admit_address(self, request: Request) -> int | None:
        """Admit one request from its client address (before its body is read), or refuse it:
        then the whole seconds to wait before trying again."""
        return _admit(self._by_address, self.client_address(request))

    def admit_email(self, email: str | None) -> int | None:
        """Admit one submission for an e-mail address (none given: nothing to count)."""
        return _admit(self._by_email, email.strip().lower()) if email else None


def _admit(window: SlidingWindow | None, key: str) -> int | None:
    if window is None:
        return None
    if (wait := window.wait_s(key)) > 0:
        return max(1, math.ceil(wait))
    window.admit(key)
    return None


def _parsed(text: str) -> Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None
