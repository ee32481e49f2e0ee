"""Signing in to the console at the city's identity provider: the authorization code flow with
PKCE, against a fake IdP in this process whose access tokens the real intake (the session's
in-process stack) verifies, as it does the city app's."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from conftest import OidcProvider, Stack
from web.bootstrap import create_app
from web.settings import WebSettings
from web.staff import session as sessions

WEB = "http://web.test"
INTAKE = "http://intake.test"


class FakeIdp(httpx.AsyncBaseTransport):
    """The IdP's discovery and token endpoints (its login page is skipped: the test plays the
    browser coming back with a code); everything else goes to intake."""

    def __init__(self, provider: OidcProvider, intake: httpx.AsyncBaseTransport) -> None:
        self.provider = provider
        self.intake = intake
        #: code → (the PKCE challenge it was issued for, the claims of its access token)
        self.codes: dict[str, tuple[str, dict[str, Any]]] = {}
        self.token_requests: list[dict[str, list[str]]] = []

    def issue_code(self, authorize_url: str, **claims: Any) -> tuple[str, str]:
        """The user signed in at the IdP: a code for the request, and the state to send back."""
        query = parse_qs(urlsplit(authorize_url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["response_type"] == ["code"]
        assert query["redirect_uri"] == [f"{WEB}/staff/oidc/callback"]
        code = secrets.token_urlsafe(16)
        self.codes[code] = (query["code_challenge"][0], claims)
        return code, query["state"][0]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        issuer = self.provider.issuer
        if str(request.url) == f"{issuer}/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/protocol/openid-connect/auth",
                    "token_endpoint": f"{issuer}/protocol/openid-connect/token",
                    "jwks_uri": self.provider.jwks_url,
                },
            )
        if str(request.url) == f"{issuer}/protocol/openid-connect/token":
            form = parse_qs((await request.aread()).decode())
            self.token_requests.append(form)
            challenge, claims = self.codes.pop(form["code"][0], ("", {}))
            verifier = form.get("code_verifier", [""])[0]
            computed = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if not challenge or computed != challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
            bearer = self.provider.token(claims.pop("sub"), **claims)["Authorization"]
            return httpx.Response(
                200,
                json={
                    "access_token": bearer.removeprefix("Bearer "),
                    "token_type": "Bearer",
                    "expires_in": 300,
                },
            )
        if request.url.host == "intake.test":
            return await self.intake.handle_async_request(request)
        return httpx.Response(404)


def console(stack: Stack, oidc: OidcProvider) -> tuple[httpx.AsyncClient, FakeIdp]:
    idp = FakeIdp(oidc, httpx.ASGITransport(app=stack.apps["intake"]))
    settings = WebSettings(
        secret_key="oidc-test-secret",
        intake_url=INTAKE,
        public_base_url=WEB,
        oidc_issuer=oidc.issuer,
        oidc_client_id="maengelmelder-console",
    )
    app = create_app(settings, transport=idp)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEB), idp


async def test_staff_sign_in_at_the_city_idp_with_pkce(stack: Stack, oidc: OidcProvider) -> None:
    browser, idp = console(stack, oidc)
    async with browser:
        sign_in = await browser.get("/staff/")
        assert "Mit dem Konto der Stadt anmelden" in sign_in.text

        started = await browser.get("/staff/oidc/start", params={"next": "/staff/statistics"})
        assert started.status_code == 303
        authorize = started.headers["location"]
        assert authorize.startswith(f"{oidc.issuer}/protocol/openid-connect/auth?")
        assert "maengelmelder-console" in authorize
        code, state = idp.issue_code(
            authorize, sub="erika", preferred_username="erika.m", offices=["VTA-OST"]
        )

        # A callback with someone else's state is refused (login CSRF), the code unspent.
        forged = await browser.get("/staff/oidc/callback", params={"code": code, "state": "x"})
        assert forged.status_code == 401
        assert sessions.COOKIE not in browser.cookies

        back = await browser.get("/staff/oidc/callback", params={"code": code, "state": state})
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/staff/statistics"
        [token_request] = idp.token_requests
        assert len(token_request["code_verifier"][0]) >= 43
        cookie = back.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
        assert "Path=/staff" in cookie

        # Intake verified the IdP's token: the console shows the member's offices' tickets.
        queue = await browser.get("/staff/tickets")
        assert queue.status_code == 200
        assert "Angemeldet: erika.m" in queue.text

        # The round trip is used up: its state and verifier are gone with their cookie.
        again = await browser.get("/staff/oidc/callback", params={"code": code, "state": state})
        assert again.status_code == 401


async def test_without_an_idp_there_is_no_idp_sign_in(stack: Stack) -> None:
    settings = WebSettings(secret_key="s", intake_url=INTAKE, public_base_url=WEB)
    app = create_app(settings, transport=httpx.ASGITransport(app=stack.apps["intake"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEB) as web:
        page = await web.get("/staff/")
        assert "Mit dem Konto der Stadt anmelden" not in page.text
        assert (await web.get("/staff/oidc/start")).status_code == 404
