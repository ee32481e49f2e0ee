"""CSRF protection for every form (double submit, signed): each browser gets a random value in
an HttpOnly cookie; a form carries the HMAC of that value under web's secret key. A cross-site
page can neither read the cookie nor compute the token."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "mm_csrf"
FIELD = "csrf_token"


class CsrfRefused(Exception):
    """A form without a valid token: a 403 page asks to reload and send again."""


def _sign(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def token(request: Request) -> str:
    """The token to put in the form's hidden ``csrf_token`` field."""
    return _sign(
        request.app.state.settings.secret_key.get_secret_value(),
        request.scope["state"]["csrf_seed"],
    )


def verify(request: Request, form: FormData) -> None:
    sent = form.get(FIELD)
    seed = request.cookies.get(COOKIE)
    if not isinstance(sent, str) or not seed:
        raise CsrfRefused
    expected = _sign(request.app.state.settings.secret_key.get_secret_value(), seed)
    # Bytes, not str: compare_digest refuses str with non-ASCII characters (a TypeError, a 500),
    # and a forged form may send any.
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused


class CsrfCookie:
    """Pure ASGI: reads the browser's CSRF seed, or makes one and sets its cookie."""

    def __init__(self, app: ASGIApp, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seed = Request(scope).cookies.get(COOKIE)
        fresh = not seed or len(seed) > 64
        if fresh:
            seed = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_seed"] = seed

        async def with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                cookie = f"{COOKIE}={seed}; Path=/; HttpOnly; SameSite=Lax"
                if self.secure:
                    cookie += "; Secure"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, with_cookie)
