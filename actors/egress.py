"""Egress by allow-list: a session's code reaches the destinations its list allows, nothing else.

The kernel of such a session has a network namespace of its own with only a loopback (as with
the network off). Its waiter (see ``confinement``), outside the kernel's sandbox but inside that
namespace, listens on ``127.0.0.1:3128`` there and hands each connection to a UNIX socket in
the kernel's temp folder, where this proxy, in the session's actor (which has the network),
decides per destination. ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``ALL_PROXY`` point at it, so
urllib, requests, httpx, pip and curl work unchanged; anything that ignores them reaches
nothing. It speaks HTTP (``CONNECT`` for TLS: it sees the host and port, never the content;
absolute URIs for plain HTTP) and SOCKS5 on the same port.

Names are resolved here, not in the kernel, and every address is checked: an allowed name that
resolves into a denied range (loopback, link-local and the cloud metadata address, the
cluster's own nodes) is refused unless a rule lists that address. The proxy runs on a thread
of its own with its own event loop: traffic never waits behind the actor's calls, or they
behind it. ``SessionNetwork`` is a session's network as its host keeps it: its setting and,
for a list, its proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from raykernel.errors import InvalidArgument

log = logging.getLogger(__name__)

MAX_RULES = 256
MAX_HEADER_BYTES = 64 * 1024
CONNECT_TIMEOUT = 15.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused even for an allowed name, unless a rule names an address in them: the host's own
# loopback (the proxy runs there), link-local (the cloud metadata address 169.254.169.254),
# "this network", multicast.
DENIED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/10",
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
    )
)

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True)
class Rule:
    """One allowed destination: a host name (``*.`` for any subdomain) or an address range,
    on one port or any."""

    text: str
    name: str | None = None
    network: Network | None = None
    port: int | None = None

    def allows_name(self, host: str, port: int) -> bool:
        if self.name is None or (self.port is not None and self.port != port):
            return False
        if self.name.startswith("*."):
            return host.endswith(self.name[1:])
        return host == self.name

    def allows_address(self, address: Address, port: int) -> bool:
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return address.version == self.network.version and address in self.network


def parse_rules(items: Iterable[str]) -> list[Rule]:
    """The allow-list from its text: ``pypi.org``, ``*.githubusercontent.com:443``,
    ``127.0.0.1:8080``, ``10.1.0.0/16``, ``[2001:db8::1]:443``. ``InvalidArgument`` names the
    first item that is none of these."""
    rules = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgument(f"network: an empty destination: {item!r}")
        rules.append(_rule(item.strip()))
        if len(rules) > MAX_RULES:
            raise InvalidArgument(f"network: at most {MAX_RULES} destinations")
    return rules


def _rule(text: str) -> Rule:
    host, port = text, None
    if text.startswith("["):  # [v6] or [v6]:port or [v6/n]:port
        inside, _, rest = text[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise InvalidArgument(f"network: not a destination: {text!r}")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, raw = text.split(":")
        port = _port(raw, text)
    with contextlib.suppress(ValueError):
        return Rule(text, network=ipaddress.ip_network(host, strict=False), port=port)
    name = host.lower().rstrip(".")
    if not _HOST.fullmatch(name) or len(name) > 253:
        raise InvalidArgument(
            f"network: not a host name, address or range: {text!r} (e.g. 'pypi.org', "
            "'*.example.com:443', '10.1.0.0/16', '127.0.0.1:8080')"
        )
    return Rule(text, name=name, port=port)


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise InvalidArgument(f"network: not a port in {text!r}")
    return int(raw)


class Refused(Exception):
    """A destination the list does not allow; the message names why."""


class Policy:
    """The session's rules, the ranges refused unless a rule covers the address, and the
    cluster's own nodes, refused unless a rule names that very address."""

    def __init__(self, rules: list[Rule], nodes: Iterable[Address] = ()) -> None:
        self.rules = rules
        self.nodes = frozenset(_plain(a) for a in nodes)

    def describe(self) -> list[str]:
        return [rule.text for rule in self.rules]

    async def addresses(self, host: str, port: int) -> list[Address]:
        """Where ``host:port`` may be reached, resolved here; ``Refused`` says why not."""
        host = host.strip("[]").lower().rstrip(".")
        listed = f"(allowed: {', '.join(self.describe()) or 'nothing'})"
        try:
            literal: Address | None = _plain(ipaddress.ip_address(host))
        except ValueError:
            literal = None
        if literal is not None:
            if not any(rule.allows_address(literal, port) for rule in self.rules):
                raise Refused(
                    f"{_where(host, port)} is not in this session's network list {listed}"
                )
            if self._denied(literal, port):
                raise Refused(
                    f"{_where(host, port)} is a node of this cluster: only a rule naming that "
                    "very address reaches it"
                )
            return [literal]
        if not any(rule.allows_name(host, port) for rule in self.rules):
            raise Refused(f"{_where(host, port)} is not in this session's network list {listed}")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc.strerror or exc}") from None
        found = list(dict.fromkeys(_plain(ipaddress.ip_address(i[4][0])) for i in infos))
        usable = [a for a in found if not self._denied(a, port)]
        if not usable:
            raise Refused(
                f"{_where(host, port)} resolves to {', '.join(map(str, found))}, in a denied "
                "range (loopback, link-local, the cluster's own nodes) that no rule lists"
            )
        return usable

    def _denied(self, address: Address, port: int) -> bool:
        if address in self.nodes:
            return not any(
                rule.allows_address(address, port)
                and rule.network is not None
                and rule.network.num_addresses == 1
                for rule in self.rules
            )
        if any(rule.allows_address(address, port) for rule in self.rules):
            return False
        return any(address.version == n.version and address in n for n in DENIED)


def host_addresses() -> list[Address]:
    """Every address of this machine's interfaces, IPv4 and IPv6: the node the proxy runs on
    is reached at each of them (Ray's ports too), whichever one Ray names it by."""
    found: list[Address] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(ValueError):
                    found.append(ipaddress.ip_address(entry.address.split("%", 1)[0]))
    return found


def _plain(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EgressProxy:
    """The proxy of one session, on a UNIX socket, on a thread and event loop of its own."""

    def __init__(self, policy: Policy, path: Path, session: str = "") -> None:
        self.policy = policy
        self.path = path
        self.session = session
        self.refused = 0
        self.connections = 0
        self.last_refused: str | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="raykernel-egress", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def set_policy(self, policy: Policy) -> None:
        """New rules, for new connections (open ones go on)."""
        self.policy = policy

    def report(self) -> dict[str, Any]:
        return {
            "mode": "allowlist",
            "allowed": self.policy.describe(),
            "connections": self.connections,
            "refused": self.refused,
            "last_refused": self.last_refused,
        }

    # -- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_unix_server(self._handle, path=str(self.path), limit=MAX_HEADER_BYTES)
        )
        os.chmod(self.path, 0o600)
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x05":
                await self._socks(reader, writer)
            else:
                await self._http(first, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("egress proxy of %s failed on a connection", self.session)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _open(self, host: str, port: int) -> tuple[Any, Any]:
        """A connection to an allowed destination (``Refused`` otherwise), counted."""
        try:
            addresses = await self.policy.addresses(host, port)
        except Refused:
            self.refused += 1
            self.last_refused = _where(host, port)
            _trace_refusal(self.session, host, port)
            raise
        last: OSError | None = None
        for address in addresses:
            try:
                opened = await asyncio.wait_for(
                    asyncio.open_connection(str(address), port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                last = exc if isinstance(exc, OSError) else OSError(str(exc))
                continue
            self.connections += 1
            return opened
        raise ConnectionError(f"{_where(host, port)}: {last}")

    async def _http(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = first + await reader.readuntil(b"\r\n\r\n")
        request_line, _, rest = head.partition(b"\r\n")
        try:
            method, target, version = request_line.decode("latin-1").split(" ")
        except ValueError:
            await _reply(writer, 400, "raykernel: not an HTTP proxy request\n")
            return
        if method.upper() == "CONNECT":
            host, _, port = target.rpartition(":")
            if not port.isdigit():
                await _reply(writer, 400, f"raykernel: CONNECT needs host:port, not {target}\n")
                return
            try:
                up_reader, up_writer = await self._open(host, int(port))
            except Refused as exc:
                await _reply(writer, 403, f"raykernel: {exc}\n")
                return
            except ConnectionError as exc:
                await _reply(writer, 502, f"raykernel: {exc}\n")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _pipe(reader, writer, up_reader, up_writer)
            return
        match = re.fullmatch(r"http://(\[[^\]]+\]|[^/:]+)(?::(\d+))?(/.*)?", target)
        if match is None:
            await _reply(writer, 400, "raykernel: a proxy request needs an http:// URL\n")
            return
        host, port, path = match.group(1), int(match.group(2) or 80), match.group(3) or "/"
        try:
            up_reader, up_writer = await self._open(host, port)
        except Refused as exc:
            await _reply(writer, 403, f"raykernel: {exc}\n")
            return
        except ConnectionError as exc:
            await _reply(writer, 502, f"raykernel: {exc}\n")
            return
        headers = [
            line
            for line in rest.split(b"\r\n")
            if line and not line.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))
        ]
        up_writer.write(
            f"{method} {path} {version}\r\n".encode("latin-1")
            + b"".join(h + b"\r\n" for h in headers)
            + b"Connection: close\r\n\r\n"
        )
        await up_writer.drain()
        await _pipe(reader, writer, up_reader, up_writer)

    async def _socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = (await reader.readexactly(1))[0]
        await reader.readexactly(count)  # methods offered: no authentication is what we take
        writer.write(b"\x05\x00")
        version, command, _reserved, kind = await reader.readexactly(4)
        if kind == 1:
            host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        elif kind == 3:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("idna")
        else:
            writer.write(b"\x05\x08\x00\x01" + bytes(6))  # address type not supported
            return
        port = struct.unpack("!H", await reader.readexactly(2))[0]
        if version != 5 or command != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))  # only CONNECT
            return
        try:
            up_reader, up_writer = await self._open(host, port)
        except Refused:
            writer.write(b"\x05\x02\x00\x01" + bytes(6))  # not allowed by the ruleset
            return
        except ConnectionError:
            writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await writer.drain()
        await _pipe(reader, writer, up_reader, up_writer)


async def _reply(writer: asyncio.StreamWriter, status: int, body: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}
    data = body.encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if sink.can_write_eof():
                    sink.write_eof()

    try:
        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
    finally:
        up_writer.close()


def _trace_refusal(session: str, host: str, port: int) -> None:
    """A refusal is an event in the trace of the process (exported when it exports)."""
    with contextlib.suppress(Exception):
        from raykernel import telemetry

        with telemetry.span("raykernel.network.refused", session_id=session) as span:
            telemetry.set_attributes(span, destination=_where(host, port), at=time.time())


class SessionNetwork:
    """A session's network: "on", "off", or the destinations it may reach, which its proxy
    enforces (started before its kernel, whose waiter forwards to it). The cluster's nodes are
    reached only if the list names their very addresses (the actor gives them at the claim).
    Made again when its host is recycled: the proxy's socket is in the kernel's temp folder."""

    def __init__(
        self, network: str | list[str], socket: Path, session_id: Callable[[], str]
    ) -> None:
        self.network = network
        self.socket = socket
        self.cluster_nodes: list[str] = []
        self.proxy: EgressProxy | None = None
        self._session_id = session_id

    @property
    def mode(self) -> str:
        """What the kernel's spec names: "on", "off" or "allowlist" (through the proxy)."""
        return "allowlist" if isinstance(self.network, list) else self.network

    def serve(self) -> None:
        """An allow-listed session's proxy, before its kernel starts; the policy follows the
        session's list."""
        if not isinstance(self.network, list):
            self.stop()
            return
        nodes = [*map(ipaddress.ip_address, self.cluster_nodes), *host_addresses()]
        policy = Policy(parse_rules(self.network), nodes)
        if self.proxy is None:
            self.proxy = EgressProxy(policy, self.socket, self._session_id())
            self.proxy.start()
        else:
            self.proxy.set_policy(policy)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    def change(self, network: list[str]) -> dict[str, Any]:
        """New destinations for an allow-listed session, for its new connections."""
        if not isinstance(self.network, list):
            raise InvalidArgument(
                f"session {self._session_id()!r} has network {self.network!r}: only an "
                "allow-list can change while the session lives (create it with a list)"
            )
        parse_rules(network)  # refused before anything changes
        self.network = list(network)
        self.serve()
        return self.report()

    def report(self) -> dict[str, Any]:
        if self.proxy is not None:
            return self.proxy.report()
        return {"mode": self.mode}

    @property
    def refused(self) -> int:
        """How many connections the list has refused so far."""
        return self.proxy.refused if self.proxy is not None else 0

    def refused_since(self, before: int) -> dict[str, Any] | None:
        """What the list refused since ``refused`` was ``before``; None: nothing."""
        proxy = self.proxy
        if proxy is None or proxy.refused <= before:
            return None
        return {"count": proxy.refused - before, "last": proxy.last_refused}
