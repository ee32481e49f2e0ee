"""Signing in at the city's identity provider: OpenID Connect's authorization code flow with
PKCE (S256), by authlib. Web only fetches the access token; intake checks it (issuer, audience,
signature) on every call, as it does for the city's app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from web.settings import WebSettings


class SignInFailed(Exception):
    """The provider refused, or answered what we cannot use."""


@dataclass(frozen=True)
class Started:
    url: str
    state: str
    verifier: str


class OidcClient:
    def __init__(self, settings: WebSettings, transport: httpx.AsyncBaseTransport | None = None):
        assert settings.oidc_issuer
        assert settings.oidc_client_id
        self.settings = settings
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.transport = transport
        self.redirect_uri = f"{settings.public_base_url}/staff/oidc/callback"
        self._metadata: dict[str, Any] | None = None

    def _client(self) -> AsyncOAuth2Client:
        secret = self.settings.oidc_client_secret
        client_secret = secret.get_secret_value() if secret else ""
        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id,
            client_secret=client_secret or None,
            scope=self.settings.oidc_scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post" if client_secret else "none",
            transport=self.transport,
            timeout=10.0,
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once)."""
        if self._metadata is None:
            try:
                async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as http:
                    answer = await http.get(f"{self.issuer}/.well-known/openid-configuration")
                answer.raise_for_status()
                self._metadata = dict(answer.json())
            except (httpx.HTTPError, ValueError) as exc:
                raise SignInFailed(f"no discovery document at {self.issuer}") from exc
        return self._metadata

    async def start(self) -> Started:
        endpoint = (await self.metadata())["authorization_endpoint"]
        verifier = generate_token(64)
        async with self._client() as client:
            url, state = client.create_authorization_url(endpoint, code_verifier=verifier)
        return Started(url, state, verifier)

    async def finish(self, code: str, verifier: str) -> str:
        """The access token for the code the provider sent back."""
        endpoint = (await self.metadata())["token_endpoint"]
        try:
            async with self._client() as client:
                token = await client.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=verifier,
                )
        except Exception as exc:  # authlib raises its own errors and httpx's
            raise SignInFailed(str(exc)) from exc
        access_token = token.get("access_token")
        if not isinstance(access_token, str):
            raise SignInFailed("the provider sent no access token")
        return access_token
