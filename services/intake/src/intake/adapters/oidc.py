"""Staff signed in at the city's identity provider (OIDC): their access tokens are JWTs, checked
against the provider's published keys (JWKS), issuer, audience and expiry. The offices a member
works for and the admin role come from claims, so the provider stays the one place where staff
are managed. Used beside the local bearer tokens, which remain for scripts and the local stack.
"""

from __future__ import annotations

import asyncio
from typing import Any

from intake.adapters.staff import StaffMember


class JwtAuthenticator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        offices_claim: str = "offices",
        roles_claim: str = "roles",
        admin_role: str = "maengelmelder-admin",
        jurisdiction_claim: str = "jurisdiction",
        default_jurisdiction: str = "leipzig",
    ) -> None:
        # PyJWT and the cryptography it loads: imported only where OIDC is configured.
        import jwt

        self._issuer = issuer
        self._audience = audience
        # Keys are cached; an unknown key id makes the client fetch the set again (rotation).
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)
        self._offices_claim = offices_claim
        self._roles_claim = roles_claim
        self._admin_role = admin_role
        self._jurisdiction_claim = jurisdiction_claim
        self._default_jurisdiction = default_jurisdiction

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        return token.count(".") == 2

    async def authenticate(self, token: str) -> StaffMember | None:
        """The member a valid token names; None for anything invalid, expired or foreign."""
        import jwt

        try:
            # The key client may fetch the key set over HTTP, which blocks: off the loop.
            claims = await asyncio.to_thread(self._verify, token)
        except (jwt.PyJWTError, OSError):
            return None
        offices = _strings(claims.get(self._offices_claim))
        roles = _strings(claims.get(self._roles_claim))
        name = str(claims.get("preferred_username") or claims["sub"])
        is_admin = self._admin_role in roles
        # Without the claim: a member works for the deployment's default jurisdiction, an admin
        # for all of them (as before there were several).
        jurisdiction = claims.get(self._jurisdiction_claim)
        if not isinstance(jurisdiction, str) or not jurisdiction:
            jurisdiction = None if is_admin else self._default_jurisdiction
        return StaffMember(0, name, frozenset(offices), is_admin, jurisdiction)

    def _verify(self, token: str) -> dict[str, Any]:
        import jwt

        key = self._keys.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "ES256"],
            audience=self._audience,
            issuer=self._issuer,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
        return claims


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []
