"""What session code can reach, tried from inside a session through a real client (the kernel
is confined by default): no Ray, no token, no home, no other session's files, no signals out,
and with the network off no TCP or UDP at all."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client

from tests.helpers import call, run


def _error(reply: dict) -> str:
    assert reply["success"] is False, reply
    return f"{reply['error']['ename']}: {reply['error']['evalue']}"


async def test_health_reports_the_isolation(client: Client, scratch: str) -> None:
    cold = await call(client, "get_kernel_health", session_id=scratch)
    assert cold["status"] == "cold" and cold["pid"] is None  # no process before its first call
    await run(client, "None", session_id=scratch)
    health = await call(client, "get_kernel_health", session_id=scratch)
    isolation = health["isolation"]
    assert isolation["mode"] == "confined"
    assert isolation["files"].startswith("landlock")
    assert isolation["network"] == "on"
    assert health["pid"] != health["actor_pid"]  # user code runs in its own process


async def test_no_ray_no_token_no_ray_environment(client: Client, scratch: str) -> None:
    env = await run(
        client,
        "import os\nsorted(k for k in os.environ if k.startswith(('RAY', 'RAYKERNEL')))",
        session_id=scratch,
    )
    assert env["result"] == "[]"
    token = await run(
        client,
        "open(__import__('pathlib').Path.home() / '.ray' / 'auth_token').read()",
        session_id=scratch,
    )
    assert "Error" in _error(token)
    real = await run(
        client, f"open({str(Path.home() / '.ray' / 'auth_token')!r}).read()", session_id=scratch
    )
    assert _error(real).startswith("PermissionError")
    # Ray's own folder (the sockets of the node's Ray processes) is not there for the kernel.
    listing = await run(client, "import os\nos.listdir('/tmp/ray')", session_id=scratch)
    assert listing["result"] == "[]" or "PermissionError" in _error(listing)


async def test_session_code_cannot_join_the_cluster_or_see_other_sessions(
    client: Client, scratch: str
) -> None:
    """ray.init(address='auto') finds the node's GCS by its process, and is refused: the
    cluster's token is out of reach (about 20 s: Ray's own connect timeout)."""
    await call(client, "create_session", session_id="victim")
    await run(client, "secret = 'victim-data'", session_id="victim")
    reply = await run(
        client,
        "import ray\nray.init(address='auto', namespace='raykernel')\n"
        "ray.util.list_named_actors(all_namespaces=True)",
        session_id=scratch,
        timeout=120,
    )
    assert _error(reply).startswith("ConnectionError")
    assert "victim-data" not in str(reply)
    await call(client, "delete_session", session_id="victim")


async def test_files_outside_the_workspace_are_out_of_reach(
    client: Client, scratch: str, app, tmp_path: Path
) -> None:
    secret = Path.home() / f"raykernel-secret-{uuid.uuid4().hex}.txt"
    secret.write_text("top secret")
    try:
        reply = await run(client, f"open({str(secret)!r}).read()", session_id=scratch)
        assert _error(reply).startswith("PermissionError")
        write = await run(
            client, f"open({str(tmp_path / 'x')!r}, 'w').write('x')", session_id=scratch
        )
        assert _error(write).startswith("PermissionError")
        assert not (tmp_path / "x").exists()
        # Another session's packages and the server's store (snapshots) are not readable.
        store = await run(
            client, f"import os\nos.listdir({str(app.settings.store)!r})", session_id=scratch
        )
        assert _error(store).startswith("PermissionError")
        passwd = await run(client, "open('/etc/passwd').read()", session_id=scratch)
        assert _error(passwd).startswith("PermissionError")
        # The workspace itself is the session's to use.
        ok = await run(client, "open('outputs/mine.txt', 'w').write('ok')", session_id=scratch)
        assert ok["success"] is True
    finally:
        secret.unlink()


async def test_signals_stay_inside_the_session(client: Client, scratch: str) -> None:
    import os

    # The front end is outside its sandbox: not even there in its PID namespace.
    reply = await run(client, f"import os\nos.kill({os.getpid()}, 0)", session_id=scratch)
    assert _error(reply).startswith("ProcessLookupError")
    # Its PID 1 (the namespace's reaper) is outside its Landlock domain.
    reaper = await run(client, "import os\nos.kill(1, 0)", session_id=scratch)
    assert _error(reaper).startswith("PermissionError")
    own = await run(
        client,
        "import subprocess, os, signal\np = subprocess.Popen(['sleep', '30'])\n"
        "os.kill(p.pid, signal.SIGTERM)\np.wait()",
        session_id=scratch,
    )
    assert own["result"] == "-15"  # its own children it may signal


async def test_a_session_sees_its_own_processes_only(client: Client, scratch: str) -> None:
    """Its own PID namespace and /proc: another session's command line (a password in argv)
    and the host's processes are not there; health still measures the kernel by its host
    PID, and the child-process bound still counts."""
    await call(client, "create_session", session_id="argv-victim")
    secret = f"--password=hunter-{uuid.uuid4().hex[:8]}"
    try:
        started = await run(
            client,
            "import subprocess, sys\nsleeper = 'import time; time.sleep(60)'\n"
            f"p = subprocess.Popen([sys.executable, '-c', sleeper, {secret!r}])\np.pid",
            session_id="argv-victim",
        )
        assert started["success"], started
        own = await run(
            client,
            "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit())",
            session_id=scratch,
        )
        assert own["result"] == "[1, 2]"  # the reaper and the kernel itself
        scan = await run(
            client,
            "import os\nfound = []\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try:\n"
            "        found.append(open(f'/proc/{pid}/cmdline', 'rb').read())\n"
            "    except OSError:\n"
            "        pass\n"
            f"any({secret.encode()!r} in line for line in found), os.getpid()",
            session_id=scratch,
        )
        assert scan["result"] == "(False, 2)"
        # The victim sees its own child, and the host sees the victim's kernel by its real PID.
        mine = await run(
            client,
            "import os\nlen([p for p in os.listdir('/proc') if p.isdigit()])",
            session_id="argv-victim",
        )
        assert mine["result"] == "3"
        health = await call(client, "get_kernel_health", session_id="argv-victim")
        assert health["pid"] not in (1, 2) and health["memory_usage"] > 0
        assert health["isolation"]["processes"].startswith("own PID namespace and /proc")
    finally:
        await call(client, "delete_session", session_id="argv-victim")


@pytest.fixture
def listeners() -> Iterator[dict]:
    """A TCP server and a UDP socket on 127.0.0.1, run by the test (outside any session)."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        tcp.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield {"tcp": tcp.getsockname()[1], "udp": udp, "accepted": accepted}
    stop.set()
    thread.join()
    tcp.close()
    udp.close()


def _datagrams(udp: socket.socket) -> list[bytes]:
    got = []
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            got.append(udp.recv(100))
        except TimeoutError:
            pass
    return got


async def test_network_off_reaches_nothing_while_a_neighbour_reaches_the_host(
    client: Client, listeners: dict
) -> None:
    tcp, udp = listeners["tcp"], listeners["udp"]
    udp_port = udp.getsockname()[1]
    connect = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {tcp}), timeout=3)\ns.close()\n'connected'"
    )
    send = (
        "import socket\nudp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"udp.sendto(b'hello', ('127.0.0.1', {udp_port}))"
    )
    created = await call(client, "create_session", session_id="offline", network="off")
    assert created["network"] == "off"
    assert created["isolation"]["network"].startswith("off")
    await call(client, "create_session", session_id="online")
    try:
        assert "Error" in _error(await run(client, connect, session_id="offline"))
        await run(client, send, session_id="offline")  # it may "send" on its own loopback
        assert _datagrams(udp) == [] and listeners["accepted"] == []
        # Its own loopback works (a local server a session starts for itself).
        local = await run(
            client,
            "import socket\nsrv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n"
            "c = socket.create_connection(srv.getsockname()); c.close(); 'local ok'",
            session_id="offline",
        )
        assert local["result"] == "'local ok'"
        # The neighbour, network on, reaches the test's servers.
        assert (await run(client, connect, session_id="online"))["result"] == "'connected'"
        await run(client, send, session_id="online")
        assert _datagrams(udp) == [b"hello"] and listeners["accepted"] == [1]
    finally:
        await call(client, "delete_session", session_id="offline")
        await call(client, "delete_session", session_id="online")


async def test_process_isolation_is_a_plain_process_and_says_so(workspace: Path) -> None:
    """isolation = "process" (a trusted laptop): no sandbox, reported as such; the network
    off is refused rather than run open."""
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(workspace=workspace, isolation="process", warm_pool_size=0, config=None)
    )
    async with Client(mcp) as open_client:
        health = await call(open_client, "get_kernel_health")
        assert health["isolation"]["mode"] == "process"
        assert health["isolation"]["files"].startswith("open")
        reply = await run(open_client, "import os\nos.path.expanduser('~')")
        assert reply["success"] is True
        refused = await open_client.call_tool(
            "create_session", {"session_id": "no-net", "network": "off"}, raise_on_error=False
        )
        assert refused.is_error
        assert refused.content[0].text.startswith("InvalidArgument:")
        assert "needs isolation" in refused.content[0].text
