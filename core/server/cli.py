"""``raykernel`` command line: parse flags, protect stdout in stdio mode, serve."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from raykernel import __version__


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="raykernel",
        description="MCP server with stateful Python sessions, one Ray actor per session.",
        argument_default=argparse.SUPPRESS,  # unset flags must not override env or config
    )
    parser.add_argument("--transport", choices=["stdio", "http"], help="default: stdio")
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8000)")
    parser.add_argument("--path", help="HTTP endpoint path (default /mcp)")
    parser.add_argument("--workspace", help="workspace folder (default: current directory)")
    parser.add_argument("--config", help="TOML settings file (default: configs/raykernel.toml)")
    parser.add_argument("--ray-address", dest="ray_address", help="join this Ray cluster")
    parser.add_argument("--log-level", dest="log_level", help="default INFO")
    parser.add_argument(
        "--toolsets", help="groups of tools to offer: a comma list, or all (default: default)"
    )
    parser.add_argument(
        "--hash-token",
        action="store_true",
        help="read a bearer token from stdin, print the hash auth_tokens stores, and exit",
    )
    parser.add_argument(
        "--print-token",
        action="store_true",
        help="print the local HTTP token (made if there is none yet) and exit",
    )
    parser.add_argument("--version", action="version", version=f"raykernel {__version__}")
    return vars(parser.parse_args(argv))


def _graceful_sigterm(end_stdio: Callable[[], None] | None) -> None:
    """SIGTERM must end in the same clean shutdown as closing the connection: the lifespan kills
    every session and its process group and stops Ray. Over stdio it ends the input as if the
    client had closed it. Over HTTP uvicorn handles SIGTERM itself and re-raises it once serving
    has stopped; this handler then lets the lifespan's cleanup run instead of the default action
    killing the process on the spot."""

    def stop(signum: int, frame: object) -> None:
        if end_stdio is not None:
            end_stdio()

    signal.signal(signal.SIGTERM, stop)


def _say_how_to_connect(settings: Any) -> None:
    """On stderr: the URL, and with the local token, the header and a ready line for a client
    (as Jupyter prints its URL with its token)."""
    url = f"http://{settings.host}:{settings.port}{settings.path}"
    if not settings.local_token_required:
        if not settings.auth_enabled:
            print(
                f'raykernel: serving {url} WITHOUT authentication (auth = "none"): any '
                "local process or user can run code as this server's user",
                file=sys.stderr,
            )
        return
    from .http_security import LOCAL_TOKEN_FILE, local_token

    token = local_token(settings)
    print(
        f"raykernel: serving {url}; every request needs the header\n"
        f"    Authorization: Bearer {token}\n"
        "raykernel: for Claude Code:\n"
        f'    claude mcp add --transport http raykernel {url} --header "Authorization: Bearer '
        f'{token}"\n'
        f"raykernel: the token is kept in {settings.store / LOCAL_TOKEN_FILE} (the same next "
        "time; raykernel --print-token shows it)",
        file=sys.stderr,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from raykernel.settings import load_settings

    flags = parse_args(argv)
    if flags.pop("hash_token", False):
        from .http_security import token_hash

        print(token_hash(sys.stdin.readline().strip()))
        return 0
    print_token = flags.pop("print_token", False)
    try:
        settings = load_settings(**flags)
    except Exception as exc:  # a bad flag, env var or config file: say which, exit non-zero
        print(f"raykernel: invalid settings: {exc}", file=sys.stderr)
        return 2
    if print_token:
        from .http_security import local_token

        print(local_token(settings))
        return 0
    if not settings.ray_address:  # a cluster's own temp folder is checked once joined
        from raykernel.settings import default_ray_temp

        try:
            settings.refuse_inside(default_ray_temp())
        except ValueError as exc:
            print(f"raykernel: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.transport == "http":
        from .http_security import is_loopback

        if not is_loopback(settings.host) and not settings.auth_enabled:
            print(
                f"raykernel: refusing to serve on {settings.host}, a non-loopback address, "
                "without authentication: set RAYKERNEL_AUTH_TOKEN (or a JWT verifier)",
                file=sys.stderr,
            )
            return 2
    end_stdio: Callable[[], None] | None = None
    if settings.transport == "stdio":
        from .stdio_wire import claim_stdio

        end_stdio = claim_stdio(settings.max_request_bytes)

    from raykernel.errors import InvalidSetting

    from .build import build_server

    try:
        mcp, _app = build_server(settings)
    except InvalidSetting as exc:  # known once the plugins are loaded (a toolset's name)
        print(f"raykernel: invalid settings: {exc}", file=sys.stderr)
        return 2
    if settings.transport == "http":
        _say_how_to_connect(settings)
    _graceful_sigterm(end_stdio)
    if settings.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False)
    else:
        from starlette.middleware import Middleware

        from .http_security import BodySizeLimit

        mcp.run(
            transport="http",
            show_banner=False,
            host=settings.host,
            port=settings.port,
            path=settings.path,
            # DNS-rebinding protection: Host and Origin are checked (403 on a bad Origin).
            host_origin_protection=True,
            allowed_hosts=settings.allowed_hosts or None,
            allowed_origins=settings.allowed_origins or None,
            middleware=[Middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)],
        )
    return 0
