"""The confused deputy (#38): a session's actor runs with more rights than its kernel (the server
user's, Ray's token), so what the kernel tells it is input. Each test is an attack from alice's
session code, over HTTP against a real server with three named tokens (alice, bob, and ops, an
admin), written as the red team ran it: a patched change tracker naming paths, a run count that
is a path, a pickle with a ``__reduce__``, a tail of 300 MB, the node's IPv6 address."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ipaddress
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastmcp import Client

from raykernel.server.http_security import token_hash
from raykernel.workspace import identity_folder
from tests.helpers import HttpServer, call, call_error, http_server_process, run

pytestmark = pytest.mark.subprocess

TOKENS = {"alice": "alice-secret", "bob": "bob-secret", "ops": "ops-secret"}

# Session code that finds its own kernel's service (what a tenant can always do: it is in its
# own process) to patch what the kernel tells its actor.
SERVICE = (
    "import gc\n"
    "from raykernel.kernel.service import KernelService\n"
    "svc = next(o for o in gc.get_objects() if isinstance(o, KernelService))\n"
)


class Deputy:
    def __init__(self, server: HttpServer, workspace: Path) -> None:
        self.server = server
        self.workspace = workspace

    def folder(self, name: str) -> Path:
        return self.workspace / identity_folder(f"token:{name}")

    def client(self, name: str) -> Client:
        return Client(self.server.url, auth=TOKENS[name])


@pytest.fixture(scope="module")
def deputy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deputy]:
    workspace = tmp_path_factory.mktemp("deputy")
    env = {
        "RAYKERNEL_AUTH_TOKENS": json.dumps({n: token_hash(t) for n, t in TOKENS.items()}),
        "RAYKERNEL_ADMIN_IDENTITIES": json.dumps(["token:ops"]),
        "RAYKERNEL_WARM_POOL_SIZE": "0",
    }
    with http_server_process(workspace, **env) as server:
        yield Deputy(server, workspace)


@pytest.fixture
async def alice(deputy: Deputy) -> AsyncIterator[Client]:
    # Bob's workspace exists (his scripts/ folder is where the attacks aim).
    async with deputy.client("bob") as bob:
        await call(bob, "list_files")
    async with deputy.client("alice") as client:
        yield client


async def test_checkpoint_names_from_the_kernel_never_become_paths(
    deputy: Deputy, alice: Client, tmp_path: Path
) -> None:
    """The change tracker patched to name absolute paths: the actor wrote a pickle's bytes to
    bob's scripts/ (first on bob's sys.path) and, asked to rewind, read a 0600 file outside
    every workspace into alice's kernel. Parsed, the reply is a protocol violation: nothing is
    written or read, and the session is told its process was ended."""
    planted = deputy.folder("bob") / "scripts" / "planted.py"
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the server user's secret")
    secret.chmod(0o600)
    stolen = "stolen.bin"  # in alice's own workspace: what her patched rewind received
    await call(alice, "create_session", session_id="ckpt", checkpoint="after_run")
    await run(alice, "x = 1", session_id="ckpt")  # the tracker exists after one checkpoint
    patch = SERVICE + (
        f"PLANT, SECRET = {str(planted)!r}, {str(secret)!r}\n"
        "from raykernel.protocol import KernelOp\n"
        "def changes(namespace):\n"
        "    return {'names': {'x': PLANT, 'y': SECRET},\n"
        "            'blobs': {PLANT: b'STOLEN = 1\\n'}, 'not_preserved': {}}\n"
        "svc.tracker.changes = changes\n"
        "real_rewind = svc.operations[KernelOp.REWIND]\n"
        "def rewind(blobs, count):\n"
        f"    open({stolen!r}, 'wb').write(b''.join(blobs.values()))\n"
        "    return real_rewind(blobs, count)\n"
        "svc.operations[KernelOp.REWIND] = rewind\n"
        "y = 2"
    )
    poisoned = await run(alice, patch, session_id="ckpt")
    count = poisoned["execution_count"]
    # The checkpoint is taken off the reply's path: a later call hears of its end.
    told = await _told_of_violation(alice, "ckpt")
    assert not planted.exists()
    assert "broke the protocol" in told, told
    error = await call_error(alice, "rewind_session", to_execution=count, session_id="ckpt")
    assert error.startswith("InvalidArgument: no checkpoint after run"), error
    assert not planted.exists()
    stolen_file = deputy.folder("alice") / stolen
    assert not stolen_file.exists() or b"secret" not in stolen_file.read_bytes()
    # Bob's next import finds nothing of alice's.
    async with deputy.client("bob") as bob:
        reply = await run(bob, "import planted")
        assert reply["error"]["ename"] == "ModuleNotFoundError", reply
    # The session goes on from its last good checkpoint.
    assert (await run(alice, "x", session_id="ckpt"))["result"] == "1"
    await call(alice, "delete_session", session_id="ckpt")


async def _told_of_violation(client: Client, session_id: str) -> str:
    for _ in range(50):
        reply = json.dumps(await run(client, "1 + 1", session_id=session_id))
        if "broke the protocol" in reply:
            return reply
        await asyncio.sleep(0.1)
    return reply


async def test_a_run_count_from_the_kernel_is_not_a_file_name(
    deputy: Deputy, alice: Client
) -> None:
    """The kernel's checkpoint patched to say its run count is ``../../<bob>/scripts/x``: the
    actor named the point file with it. The actor numbers runs itself."""
    target = deputy.folder("bob") / "scripts" / "counted"
    await call(alice, "create_session", session_id="count", checkpoint="after_run")
    await run(alice, "a = 1", session_id="count")
    patch = SERVICE + (
        "from raykernel.protocol import KernelOp\n"
        "real = svc.operations[KernelOp.CHECKPOINT]\n"
        "def checkpoint(limit):\n"
        f"    return {{**real(limit), 'execution_count': '../' * 12 + {str(target)!r}[1:]}}\n"
        "svc.operations[KernelOp.CHECKPOINT] = checkpoint\n"
        "a = 2"
    )
    reply = await run(alice, patch, session_id="count")
    await run(alice, "a = 3", session_id="count")
    assert not await asyncio.to_thread(Path(f"{target}.json").exists)
    rewound = await call(
        alice, "rewind_session", to_execution=reply["execution_count"], session_id="count"
    )
    assert rewound["rewound_to_execution"] == reply["execution_count"]
    assert (await run(alice, "a", session_id="count"))["result"] == "2"
    await call(alice, "delete_session", session_id="count")


async def test_the_threads_doing_a_tenants_file_work_cannot_open_the_token(
    deputy: Deputy, alice: Client
) -> None:
    """A fooled deputy (a check that is wrong some day) must still reach nothing: the threads
    that do alice's file work, in the front end and in her session's actor, are confined to
    her folders. What they found when they tried the server's home and Ray's token is in the
    reports; the actor's is in the session's isolation report."""
    info = await call(alice, "get_workspace_info")
    assert info["file_confinement"].startswith("landlock ABI "), info
    await call(alice, "create_session", session_id="held")
    await run(alice, "1", session_id="held")
    health = await call(alice, "get_kernel_health", session_id="held")
    held = health["isolation"]["deputy"]
    assert held["by"].startswith("landlock ABI "), held
    assert held["probed"] == {"home": "denied", "ray_token": "denied"}, held
    await call(alice, "delete_session", session_id="held")


async def test_a_pickle_never_moves_to_another_identity(deputy: Deputy, alice: Client) -> None:
    """An admin's transfer_variable (or fork_session) from alice's session unpickled alice's
    object in the admin's kernel, where its ``__reduce__`` ran as the admin. Refused, typed,
    and nothing ran."""
    marker = deputy.folder("ops") / "alice-ran-here"
    payload = f"open({str(marker)!r}, 'w').write('alice')"
    await run(
        alice,
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (exec, ({payload!r},))\n"
        "payload = Payload()",
    )
    async with deputy.client("ops") as ops:
        error = await call_error(
            ops,
            "transfer_variable",
            from_session="token:alice/default",
            to_session="default",
            name="payload",
        )
        assert error.startswith("NotAllowed: transfer_variable from a session of token:alice"), (
            error
        )
        assert "allow_pickles_across_identities" in error
        error = await call_error(
            ops, "fork_session", session_id="token:alice/default", new_session_id="copied"
        )
        assert error.startswith("NotAllowed: fork_session"), error
        assert "copied" not in (await call(ops, "list_sessions"))["sessions"]
        # Within one identity values still move (the admin's own sessions).
        await run(ops, "mine = 41")
        await call(ops, "create_session", session_id="second")
        await call(
            ops, "transfer_variable", from_session="default", to_session="second", name="mine"
        )
        assert (await run(ops, "mine + 1", session_id="second"))["result"] == "42"
        await call(ops, "delete_session", session_id="second")
    assert not marker.exists()


async def test_a_huge_tail_is_not_held_by_the_actor_or_the_front_end(
    deputy: Deputy, alice: Client
) -> None:
    """Session code publishing a 300 MB "tail" of its output: the actor kept it whole and the
    shared front end pulled it every half second (204 -> 1,706 MiB). A tail that long is no
    kernel's: the kernel is ended and the reply says why; the front end stays small."""
    front_end = psutil.Process(deputy.server.proc.pid)
    before = front_end.memory_info().rss
    code = SERVICE + (
        "import time\n"
        "svc._publish_tail(svc.interpreter.current_token(), 'x' * 300_000_000)\n"
        "time.sleep(3)"
    )
    run_task = asyncio.ensure_future(run(alice, code))
    async with deputy.client("bob") as bob:
        await asyncio.sleep(1.0)
        listed = await call(bob, "list_sessions")
        assert "default" in listed["sessions"]
    reply = await run_task
    assert "broke the protocol" in json.dumps(reply), reply
    assert front_end.memory_info().rss - before < 150 << 20


def _global_address(family: int) -> str | None:
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family != family:
                continue
            address = ipaddress.ip_address(entry.address.split("%", 1)[0])
            if address.is_global or (address.is_private and not address.is_link_local):
                if not address.is_loopback:
                    return str(address)
    return None


@contextlib.contextmanager
def _page_on(host: str) -> Iterator[int]:
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"reached the node")

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def test_the_nodes_ipv6_address_is_denied_like_its_ipv4_one(
    deputy: Deputy, alice: Client
) -> None:
    """An allow-list naming the node's networks, ``[<its IPv4>/24, <its IPv6>/64]``: every
    port of the node was refused on its IPv4 address and reached on its IPv6 one (Ray's gRPC
    among them). The node is refused at each of its addresses unless a rule names that very
    address."""
    v4, v6 = _global_address(socket.AF_INET), _global_address(socket.AF_INET6)
    if v6 is None or v4 is None:
        pytest.skip("this machine has no non-loopback IPv6 (or IPv4) address to test with")
    rules = [
        str(ipaddress.ip_network(f"{v4}/24", strict=False)),
        str(ipaddress.ip_network(f"{v6}/64", strict=False)),
    ]
    await call(alice, "create_session", session_id="v6", network=rules)
    fetch = (
        "import urllib.request, urllib.error\n"
        "def fetch(url):\n"
        "    try:\n"
        "        return urllib.request.urlopen(url, timeout=10).read().decode()\n"
        "    except urllib.error.HTTPError as exc:\n"
        "        return f'{exc.code} {exc.read().decode()[:200]}'\n"
    )
    with _page_on(v6) as port6, _page_on(v4) as port4:
        code = fetch + f"[fetch('http://[{v6}]:{port6}/'), fetch('http://{v4}:{port4}/')]"
        reply = await run(alice, code, session_id="v6")
    six, four = eval(reply["result"])
    assert four.startswith("403"), four
    assert six.startswith("403") and "node of this cluster" in six, six
    await call(alice, "delete_session", session_id="v6")


# Session code that keeps swapping workspace names between a file and a link out (a daemon
# thread in alice's kernel: it goes on between runs, while her file tools are called).
FLIPPER = (
    "import os, threading\n"
    "stop = threading.Event()\n"
    "def flip(name, target):\n"
    "    while not stop.is_set():\n"
    "        for make in (lambda: open(name, 'w').write('inside'),\n"
    "                     lambda: os.symlink(target, name)):\n"
    "            try:\n"
    "                os.unlink(name)\n"
    "            except FileNotFoundError:\n"
    "                pass\n"
    "            try:\n"
    "                make()\n"
    "            except OSError:\n"
    "                pass\n"
)


async def _tolerant(client: Client, tool: str, **arguments: Any) -> str:
    """What a file tool answered, its error's text included: the flip makes some calls fail."""
    result = await client.call_tool(tool, arguments, raise_on_error=False)
    return json.dumps(result.structured_content) if not result.is_error else str(result.content)


async def test_file_tools_racing_a_symlink_flip_stay_inside(
    deputy: Deputy, alice: Client, tmp_path: Path
) -> None:
    """Session code flipping names between a file and a link out while alice's file tools
    use them: read_file leaked an outside file 14 times in 300, write_file landed in bob's
    scripts/ on try 14, delete_file removed outside files. A path is opened beneath the
    workspace, following no link, once."""
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("OUTSIDE-SECRET")
    secret.chmod(0o600)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    planted = deputy.folder("bob") / "scripts" / "planted.py"
    await call(alice, "create_session", session_id="flip")
    start = FLIPPER + "".join(
        f"threading.Thread(target=flip, args=({name!r}, {str(target)!r}), daemon=True).start()\n"
        for name, target in (("r.txt", secret), ("w.txt", planted), ("d.txt", victim))
    )
    await run(alice, start, session_id="flip")
    try:
        reads = [await _tolerant(alice, "read_file", path="r.txt") for _ in range(300)]
        writes = [
            await _tolerant(alice, "write_file", path="w.txt", content="import os  # alice's")
            for _ in range(100)
        ]
        deletes = [await _tolerant(alice, "delete_file", path="d.txt") for _ in range(300)]
    finally:
        await run(alice, "stop.set()", session_id="flip")
        await call(alice, "delete_session", session_id="flip")
    assert not [r for r in reads if "OUTSIDE-SECRET" in r]
    assert any('"inside"' in r for r in reads), reads[:5]  # the race was run, not avoided
    assert not await asyncio.to_thread(planted.exists)
    assert any('"size"' in w for w in writes), writes[:5]
    assert await asyncio.to_thread(victim.read_text) == "keep me"
    assert any('"deleted"' in d for d in deletes), deletes[:5]


async def test_run_script_swapped_for_a_link_while_busy_reads_nothing_outside(
    deputy: Deputy, alice: Client
) -> None:
    """The script is checked when run_script is called and read when its run starts: session
    code that swapped it for a link to Ray's token (or bob's file) while the session was busy
    got that file's text into get_history. The actor reads it once, when the run starts,
    following no link."""
    bobs = deputy.folder("bob") / "scripts" / "bobs_secret.py"
    await asyncio.to_thread(bobs.write_text, "BOBS_SECRET = 'bob-only'\n")
    await call(alice, "create_session", session_id="swap")
    await call(alice, "save_script", name="job", content="print('alice job')\n")
    busy = (
        "import os, threading, time\n"
        "def swap():\n"
        "    time.sleep(1.5)\n"
        "    os.unlink('scripts/job.py')\n"
        f"    os.symlink({str(bobs)!r}, 'scripts/job.py')\n"
        "threading.Thread(target=swap).start()\n"
        "time.sleep(3)\n"
    )
    running = asyncio.ensure_future(run(alice, busy, session_id="swap"))
    await asyncio.sleep(0.5)  # the run above holds the session; the script is still a file
    script = await alice.call_tool(
        "run_script", {"name": "job", "session_id": "swap"}, raise_on_error=False
    )
    await running
    history = await call(alice, "get_history", session_id="swap")
    await call(alice, "delete_session", session_id="swap")
    assert "bob-only" not in json.dumps(history)
    assert "bob-only" not in str(script.content)
    assert script.is_error or "PathOutsideWorkspace" in str(script.content), script


async def test_a_huge_workspace_stalls_no_other_identity(deputy: Deputy, alice: Client) -> None:
    """300k files in alice's workspace: get_workspace_info took 1 s and delete_file 3 s on
    the front end's event loop, and every other identity waited as long. Bob's call now
    comes back while alice's delete is still under way."""
    await call(alice, "create_session", session_id="many")
    await run(
        alice,
        "import os\nos.makedirs('many', exist_ok=True)\n"
        "for i in range(300_000):\n    os.close(os.open(f'many/{i}', os.O_CREAT | os.O_WRONLY))\n",
        session_id="many",
        timeout=300,
    )
    async with deputy.client("bob") as bob:
        await call(bob, "list_files")  # bob's connection is up before alice's delete starts
        done: list[str] = []

        async def delete() -> None:
            await call(alice, "delete_file", path="many")
            done.append("alice")

        deleting = asyncio.ensure_future(delete())
        await asyncio.sleep(0.2)
        await call(bob, "list_files")
        done.append("bob")
        await deleting
    await call(alice, "delete_session", session_id="many")
    assert done == ["bob", "alice"]
