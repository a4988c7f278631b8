"""HTTP transport protections: bearer-token auth and a request body size limit."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from raykernel.settings import Settings

STATIC_CLIENT_ID = "raykernel-static-token"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_provider(settings: Settings) -> Any:
    """The token verifier the settings ask for, or None (no auth)."""
    if settings.jwt_public_key or settings.jwt_jwks_uri:
        from fastmcp.server.auth.providers.jwt import JWTVerifier

        return JWTVerifier(
            public_key=settings.jwt_public_key,
            jwks_uri=settings.jwt_jwks_uri,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithm=settings.jwt_algorithm,
        )
    if settings.auth_token is not None:
        return _static_verifier(settings.auth_token.get_secret_value())
    return None


def _static_verifier(expected: str) -> Any:
    from fastmcp.server.auth import AccessToken, TokenVerifier

    class StaticBearerToken(TokenVerifier):
        """One shared secret, compared in constant time."""

        async def verify_token(self, token: str) -> AccessToken | None:
            if not hmac.compare_digest(token.encode(), expected.encode()):
                return None
            return AccessToken(
                token="", client_id=STATIC_CLIENT_ID, scopes=[], subject=STATIC_CLIENT_ID
            )

    return StaticBearerToken()


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
