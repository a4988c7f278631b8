"""HTTP transport protections: bearer-token auth and a request body size limit."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from raykernel.settings import Settings


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_provider(settings: Settings) -> Any:
    """The token verifier the settings ask for, or None (no auth): named bearer tokens
    (checked by their hashes), the single ``auth_token``, a JWT verifier, or several of them
    (a bearer token that is not one of ours is then checked as a JWT)."""
    jwt = None
    if settings.jwt_public_key or settings.jwt_jwks_uri:
        from fastmcp.server.auth.providers.jwt import JWTVerifier

        jwt = JWTVerifier(
            public_key=settings.jwt_public_key,
            jwks_uri=settings.jwt_jwks_uri,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithm=settings.jwt_algorithm,
        )
    named = {name: digest.lower() for name, digest in settings.auth_tokens.items()}
    if settings.auth_token is not None:
        named[""] = token_hash(settings.auth_token.get_secret_value())
    if not named:
        return jwt
    return _named_tokens(named, jwt)


def token_hash(token: str) -> str:
    """What ``auth_tokens`` stores for a token: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _named_tokens(named: dict[str, str], jwt: Any) -> Any:
    from fastmcp.server.auth import AccessToken, TokenVerifier

    class NamedBearerTokens(TokenVerifier):
        """Bearer tokens known by their hashes; each is an identity (``token:<name>``)."""

        async def verify_token(self, token: str) -> AccessToken | None:
            presented = token_hash(token)
            found = None
            for name, digest in named.items():  # every hash compared, in constant time
                if hmac.compare_digest(presented.encode(), digest.encode()):
                    found = name
            if found is not None:
                identity = f"token:{found}" if found else "token"
                return AccessToken(token="", client_id=identity, scopes=[], subject=identity)
            return await jwt.verify_token(token) if jwt is not None else None

    return NamedBearerTokens()


class BodySizeLimit:
    """ASGI middleware: a request body above ``max_bytes`` gets 413 before the server reads it
    into memory (declared by Content-Length, or counted while it streams)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = f'{{"error": "request body larger than {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
