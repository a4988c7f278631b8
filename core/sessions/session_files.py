"""Workspace file operations as a given session sees them, on that session's node, in the
workspace of the identity that owns it (each identity has its own: see ``Workspaces``).

On a cluster a session may live on another machine: a file it wrote is on that machine's disk
(unless the workspace is shared storage), and a file written for it must land there. So the file
tools run each operation on the session's node, through the session's actor, which answers
while its kernel is busy running code. Sessions on the front end's node, and every session in
embedded mode (one node), are served here directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from raykernel.errors import SessionUnavailable
from raykernel.workspace import OPERATIONS, WorkspaceOp, Workspaces, perform

from .cluster import Nodes
from .handle import ActorDied
from .record import split
from .router import SessionRouter


class SessionFiles:
    def __init__(
        self,
        router: SessionRouter,
        nodes: Nodes,
        workspaces: Workspaces,
        identity: Callable[[], str],
    ) -> None:
        self.router = router
        self.nodes = nodes
        self.workspaces = workspaces
        self.identity = identity  # the caller's, for an operation that names no session

    async def run(self, session_id: str | None, op: WorkspaceOp, *args: Any) -> dict[str, Any]:
        """``op(workspace, *args)`` (``op``: one of ``Workspace``'s operations, such as
        ``Workspace.read``) in the workspace of the identity that owns ``session_id``
        (the caller's for ``None``), on that session's node; ``None`` means this node (an
        embedded server has one node, so it need not wait for Ray to say so)."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown workspace operation {op!r}")
        node_id = None
        owner = self.identity()
        if session_id is not None:
            owner = split(session_id)[0]
            record = await self.router.lookup(session_id)
            # A hibernated session has no node: its files are where the workspace is.
            if record.resident and not self.nodes.is_local(record.node_id):
                node_id = record.node_id
        if node_id is None:
            # Off the event loop (a walk of 300k files must not stall every other identity).
            reply = await perform(op, self.workspaces.of(owner), *args)
            reply["node_id"] = self.nodes.local_id
            return reply
        assert session_id is not None
        return await self._on_node(session_id, node_id, op, args)

    async def _on_node(
        self, session_id: str, node_id: str, op: WorkspaceOp, args: tuple[Any, ...]
    ) -> dict[str, Any]:
        # A session whose node is lost would never answer: say so at once.
        if not await asyncio.to_thread(self.nodes.alive, node_id):
            raise SessionUnavailable(
                f"session {session_id!r} was on node {node_id}, which is lost; run code in it "
                "to restart it on a live node"
            )
        record = self.router.get(session_id)
        if record.handle is None:
            raise SessionUnavailable(f"session {session_id!r} is not running")
        try:
            return await record.handle.workspace(op, args)
        except ActorDied:
            raise SessionUnavailable(
                f"the node of session {session_id!r} ({node_id}) cannot be reached"
            ) from None
