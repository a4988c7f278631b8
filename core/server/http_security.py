"""HTTP transport protections: bearer-token auth (the configured tokens and JWTs, or the
server's own local token), and a request body size limit."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from pathlib import Path
from typing import Any

from raykernel.settings import Settings
from raykernel.workspace import LOCAL

# The local token's file in state_dir (0600): the same token at every start.
LOCAL_TOKEN_FILE = "http-token"


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
    # identity -> the hash of its token
    named = {f"token:{name}": digest.lower() for name, digest in settings.auth_tokens.items()}
    if settings.auth_token is not None:
        named["token"] = token_hash(settings.auth_token.get_secret_value())
    if settings.local_token_required:
        return _named_tokens({LOCAL: token_hash(local_token(settings))}, None)
    if not named:
        return jwt
    return _named_tokens(named, jwt)


def local_token(settings: Settings) -> str:
    """The server's own token (made at first use: 32 random bytes, urlsafe), from
    ``state_dir/http-token``, which only the server's user can read."""
    path = settings.store / LOCAL_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return token


def _read_token(path: Path) -> str:
    # Another server starting at the same moment may still be writing it.
    for _ in range(50):
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)  # a copy made with looser rights: only the user may read it
            token = path.read_text().strip()
            if token:
                return token
        time.sleep(0.02)
    raise RuntimeError(f"the local token file {path} is empty: delete it to make a new one")


def token_hash(token: str) -> str:
    """What ``auth_tokens`` stores for a token: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


# Marks the access tokens this process's own verifier made for its named tokens: an identity is
# taken from a token's client_id only with it. A JWT names whatever it likes in client_id or sub
# ("local", "token:alice"): unmarked, it is a jwt:... identity, never the one it spells.
NAMED_TOKEN_CLAIM = "raykernel_named_token"
NAMED_TOKEN_MARK = secrets.token_hex(16)


def is_named_token(token: Any) -> bool:
    """Whether ``token`` (an AccessToken) is one of this server's named or local tokens."""
    claims = getattr(token, "claims", None) or {}
    return hmac.compare_digest(str(claims.get(NAMED_TOKEN_CLAIM, "")), NAMED_TOKEN_MARK)


def _named_tokens(named: dict[str, str], jwt: Any) -> Any:
    """A verifier of ``named`` (identity -> token hash), then of ``jwt`` if given."""
    from fastmcp.server.auth import AccessToken, TokenVerifier

    class NamedBearerTokens(TokenVerifier):
        """Bearer tokens known by their hashes, each the identity it names (``token:<name>``,
        ``token``; ``local`` for the server's own token)."""

        async def verify_token(self, token: str) -> AccessToken | None:
            presented = token_hash(token)
            found = None
            for name, digest in named.items():  # every hash compared, in constant time
                if hmac.compare_digest(presented.encode(), digest.encode()):
                    found = name
            if found is not None:
                return AccessToken(
                    token="",
                    client_id=found,
                    scopes=[],
                    subject=found,
                    claims={NAMED_TOKEN_CLAIM: NAMED_TOKEN_MARK},
                )
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
