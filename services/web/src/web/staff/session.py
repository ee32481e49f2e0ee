"""The console's session: who signed in and the credential intake accepts for them (the token
from ``make staff-token`` or the IdP's access token), in one cookie, encrypted and
authenticated (Fernet, keyed from WEB_SECRET_KEY), so web keeps no session store. HttpOnly,
SameSite=Lax, Secure outside the local stack, for /staff only. The cookie is written anew on
every request, and one older than the idle timeout is not accepted."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request
from starlette.responses import Response

from web.settings import WebSettings

COOKIE = "mm_staff"
#: The OIDC round trip's state and PKCE verifier, between the redirect and the callback.
LOGIN_COOKIE = "mm_staff_login"
PATH = "/staff"


@dataclass(frozen=True)
class StaffSession:
    credential: str
    name: str
    #: (code, name) of the member's offices.
    offices: list[tuple[str, str]]
    admin: bool

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    def office_codes(self) -> list[str]:
        return [code for code, _ in self.offices]


def _fernet(settings: WebSettings, purpose: str) -> Fernet:
    digest = hashlib.sha256(f"{purpose}:{settings.secret_key.get_secret_value()}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(settings: WebSettings, purpose: str, payload: dict[str, Any]) -> str:
    return _fernet(settings, purpose).encrypt(json.dumps(payload).encode()).decode()


def unseal(settings: WebSettings, purpose: str, sealed: str | None, ttl_s: int) -> Any:
    """The payload, or None if missing, forged or older than ``ttl_s``."""
    if not sealed:
        return None
    try:
        return json.loads(_fernet(settings, purpose).decrypt(sealed.encode(), ttl=ttl_s))
    except (InvalidToken, ValueError):
        return None


def read(request: Request) -> StaffSession | None:
    settings: WebSettings = request.app.state.settings
    found = unseal(settings, COOKIE, request.cookies.get(COOKIE), settings.staff_idle_timeout_s)
    if not isinstance(found, dict):
        return None
    try:
        return StaffSession(
            credential=str(found["credential"]),
            name=str(found["name"]),
            offices=[(str(c), str(n)) for c, n in found["offices"]],
            admin=bool(found["admin"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def write(response: Response, settings: WebSettings, session: StaffSession) -> None:
    response.set_cookie(
        COOKIE,
        seal(settings, COOKIE, asdict(session)),
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def clear(response: Response, settings: WebSettings) -> None:
    response.delete_cookie(
        COOKIE, path=PATH, httponly=True, samesite="lax", secure=settings.cookie_secure
    )
