"""Workspace file operations as a given session sees them, on that session's node.

On a cluster a session may live on another machine: a file it wrote is on that machine's disk
(unless the workspace is shared storage), and a file written for it must land there. So the file
tools run each operation on the session's node, through that node's agent actor; the agent
answers while the session itself is busy running code. Sessions on the front end's node, and
every session in embedded mode (one node), are served here directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import RaykernelError, SessionUnavailable
from .router import SessionRouter
from .workspace import OPERATIONS, Workspace

FILE_CALL_TIMEOUT = 60.0


class SessionFiles:
    def __init__(self, router: SessionRouter, workspace: Workspace) -> None:
        self.router = router
        self.workspace = workspace

    async def run(self, session_id: str | None, op: str, *args: Any) -> dict[str, Any]:
        """``workspace.<op>(*args)`` on the node of ``session_id``; ``None`` means this node
        (an embedded server has one node, so it need not wait for Ray to say so)."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown workspace operation {op!r}")
        node_id = None
        if session_id is not None:
            record = await self.router.lookup(session_id)
            if not self.router.is_local(record):
                node_id = record.node_id
        if node_id is None:
            reply = getattr(self.workspace, op)(*args)
            reply["node_id"] = self.router.runtime.node_id
            return reply
        return await self._on_node(session_id, node_id, op, args)

    async def _on_node(
        self, session_id: str | None, node_id: str, op: str, args: tuple[Any, ...]
    ) -> dict[str, Any]:
        import ray

        # An agent pinned to a lost node would wait forever to start: say so at once.
        if not await asyncio.to_thread(self.router.node_alive, node_id):
            raise SessionUnavailable(
                f"session {session_id!r} was on node {node_id}, which is lost; run code in it "
                "to restart it on a live node"
            )
        agent = self.router.node_agent(node_id)
        ref = agent.workspace.remote(
            str(self.workspace.root), self.workspace.max_file_bytes, op, *args
        )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(ref.future()), FILE_CALL_TIMEOUT)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, RaykernelError):
                raise exc.cause from None
            raise
        except ray.exceptions.RayActorError:
            raise SessionUnavailable(
                f"the node of session {session_id!r} ({node_id}) cannot be reached"
            ) from None
        except TimeoutError:
            raise SessionUnavailable(
                f"the node of session {session_id!r} did not answer within {FILE_CALL_TIMEOUT:g} s"
            ) from None
