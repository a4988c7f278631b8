"""Copy-on-write forks of a session's kernel, for run_variants: each variant runs in a fork of
the kernel process (``os.fork`` in the kernel, between runs), which starts with the session's
namespace, imports and confinement, its pages shared with the kernel until either side writes
them. The session's actor holds the forks for the length of the call: they are in the kernel's
PID and network namespaces and end with it, so a fork that must outlive the call becomes a
session of its own through the copy path (its state pickled into a new session's kernel).

A fork connects to a UNIX socket the actor listens on in its own temp folder (which only this
session's kernel can reach) and proves itself with a secret the actor gave in the fork request;
the actor learns the fork's pid from the socket itself (``SO_PEERCRED``), never from what the
fork says.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import uuid
from pathlib import Path
from typing import Any

from raykernel.errors import SessionUnavailable
from raykernel.kernel import wire
from raykernel.protocol import KernelOp
from raykernel.replies import failed_reply, kernel_died_reply

from .kernel_client import KernelGone, KernelProcess
from .runbook import stopped_reply

# Below the front end's wait for the set (CONTROL_TIMEOUT): the actor gives up first.
CONNECT_TIMEOUT = 20.0
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class ForkSet:
    """The forks one run_variants call made, in order."""

    def __init__(self, kernels: list[KernelProcess]) -> None:
        self.kernels = kernels

    async def close(self) -> None:
        await asyncio.gather(*(k.kill("the variants are done") for k in self.kernels))


class Forks:
    """A session's fork sets, by id. A kernel or fork lost under one of its operations is the
    session's ``SessionUnavailable``, saying which."""

    def __init__(self, folder: Path, grace: float) -> None:
        self.folder = folder
        self.grace = grace
        self._sets: dict[str, ForkSet] = {}
        self._refusals: set[asyncio.Future[Any]] = set()

    async def make(self, kernel: KernelProcess, count: int) -> str:
        """``count`` forks of ``kernel`` (which must be idle: the caller holds the session's
        turn); the id of the set."""
        try:
            return await self._make(kernel, count)
        except KernelGone as exc:
            raise SessionUnavailable(f"the session's process did not fork: {exc.reason}") from None

    async def _make(self, kernel: KernelProcess, count: int) -> str:
        set_id = uuid.uuid4().hex[:12]
        path = self.folder / f"fork-{set_id}.sock"
        expected = {secrets.token_hex(16): index for index in range(count)}
        made: dict[int, KernelProcess] = {}
        all_in = asyncio.Event()

        async def arrived(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                hello = await asyncio.wait_for(wire.areceive(reader, 1 << 16), CONNECT_TIMEOUT)
                index = expected.pop(str(hello.get("secret")), None)
                if index is None or hello.get("event") != "ready":
                    raise wire.ProtocolError("not one of the forks asked for")
                sock = writer.get_extra_info("socket")
                pid = _PEERCRED.unpack(
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                )[0]
            except (EOFError, OSError, TimeoutError, wire.ProtocolError):
                writer.close()
                return
            made[index] = adopted = KernelProcess.adopt(
                reader,
                writer,
                pid,
                kernel.spec,
                kernel.isolation,
                str(self._stderr_file(set_id, index)),
                kernel.max_message_bytes,
                kernel.python_info,
            )
            adopted.on_event = lambda message, k=adopted: self._refuse_upstream(k, message)
            if closed:  # too late: the set was given up meanwhile
                await adopted.kill("the variants were given up")
                return
            if len(made) == count:
                all_in.set()

        closed = False

        async def fork_all() -> None:
            for index, secret in enumerate(list(expected)):
                stderr = str(self._stderr_file(set_id, index))
                await kernel.request(KernelOp.FORK, str(path), secret, stderr)
            # Forks live in the source's PID namespace: if the source ends before they are all
            # in, the rest never come (the namespace went with it).
            arriving = asyncio.ensure_future(all_in.wait())
            ending = asyncio.ensure_future(kernel.wait_gone())
            try:
                await asyncio.wait({arriving, ending}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                arriving.cancel()
                ending.cancel()
            if not all_in.is_set():
                raise KernelGone(kernel.exit_reason or "the process ended")

        server = await asyncio.start_unix_server(arrived, path=str(path))
        try:  # one deadline for the whole set: a caller that gives up leaves nothing behind
            await asyncio.wait_for(fork_all(), CONNECT_TIMEOUT)
        except TimeoutError:
            closed = True
            await ForkSet(list(made.values())).close()
            raise SessionUnavailable(
                f"the session's process did not fork: {count - len(made)} of {count} forks "
                f"did not connect within {CONNECT_TIMEOUT:g} s"
            ) from None
        except BaseException:
            closed = True
            await ForkSet(list(made.values())).close()
            raise
        finally:
            closed = True
            server.close()
            path.unlink(missing_ok=True)
        self._sets[set_id] = ForkSet([made[i] for i in range(count)])
        return set_id

    def _refuse_upstream(self, kernel: KernelProcess, message: dict[str, Any]) -> None:
        """A variant's code mode call is refused at once (no front end follows a fork's run:
        waiting would cost the variant its whole timeout)."""
        call_id = message.get("id")
        if message.get("event") != "upstream" or not isinstance(call_id, int):
            return
        refusal = {
            "ok": False,
            "kind": "UpstreamUnavailable",
            "message": "raykernel_tools is not available in a run_variants fork",
        }
        task = asyncio.ensure_future(
            _quietly(kernel.request(KernelOp.UPSTREAM_REPLY, call_id, refusal))
        )
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    def _stderr_file(self, set_id: str, index: int) -> Path:
        return self.folder / f"fork-{set_id}-{index}.stderr"

    async def run(
        self,
        set_id: str,
        variants: list[str],
        timeout: float,
        count: int,
        session_id: str,
        compare: list[str],
    ) -> list[dict[str, Any]]:
        """Run variant ``i`` in fork ``i``, all at once; each one's reply and ``compare``
        values. A variant past ``timeout`` is interrupted, and killed if it ignores that."""
        try:
            forks = self._find(set_id).kernels
            return list(
                await asyncio.gather(
                    *(
                        self._one(kernel, code, timeout, count, session_id, compare)
                        for kernel, code in zip(forks, variants, strict=True)
                    )
                )
            )
        except KernelGone as exc:
            raise SessionUnavailable(exc.reason) from None

    async def _one(
        self,
        kernel: KernelProcess,
        code: str,
        timeout: float,
        count: int,
        session_id: str,
        compare: list[str],
    ) -> dict[str, Any]:
        token = uuid.uuid4().hex
        running = asyncio.ensure_future(kernel.request(KernelOp.EXECUTE, code, token, count))
        try:
            done, _ = await asyncio.wait({running}, timeout=timeout)
            if not done:
                kernel.interrupt(token)
                done, _ = await asyncio.wait({running}, timeout=self.grace)
                why = f"timed out after {timeout:g} s"
                if done:
                    reply = stopped_reply(running.result(), "TimeoutError", why)
                else:
                    await kernel.kill("its code ignored an interrupt")
                    reply = failed_reply(
                        session_id,
                        count,
                        "TimeoutError",
                        f"execution {why} and did not stop when interrupted; its fork was "
                        "killed (the session is not changed)",
                        interrupted=True,
                        restarted=False,
                    )
            else:
                reply = running.result()
        except KernelGone as exc:
            reply = kernel_died_reply(session_id, count, exc.reason, variant=True)
        finally:
            if not running.done():
                running.cancel()
        values: dict[str, Any] = {}
        if compare:
            try:
                values = await kernel.request(KernelOp.VALUES, compare)
            except KernelGone:
                values = {name: "<the variant's process died>" for name in compare}
        return {"reply": dict(reply), "values": values}

    async def snapshot(self, set_id: str, index: int) -> dict[str, Any]:
        """Fork ``index``'s picklable state (to become a session of its own)."""
        try:
            kernel = self._find(set_id).kernels[index]
            return await kernel.request(KernelOp.SNAPSHOT)
        except KernelGone as exc:
            raise SessionUnavailable(f"the variant's process is gone: {exc.reason}") from None

    async def drop(self, set_id: str) -> None:
        found = self._sets.pop(set_id, None)
        if found is not None:
            await found.close()
        for leftover in self.folder.glob(f"fork-{set_id}-*.stderr"):
            leftover.unlink(missing_ok=True)

    async def close(self) -> None:
        for set_id in list(self._sets):
            with contextlib.suppress(Exception):
                await self.drop(set_id)

    def _find(self, set_id: str) -> ForkSet:
        found = self._sets.get(set_id)
        if found is None:
            raise KernelGone("those forks are gone")
        return found


async def _quietly(request: Any) -> None:
    with contextlib.suppress(KernelGone, RuntimeError):
        await request
