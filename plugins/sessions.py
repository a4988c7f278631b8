"""Session tools: create, switch, list, delete, restart, interrupt."""

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from raykernel.app import App
from raykernel.arguments import OptionalSessionId, SessionId
from raykernel.hookspecs import hookimpl

Description = Annotated[str, Field(description="What the session is for.", max_length=2000)]


@hookimpl
def register_tools(register: Callable[..., Any], app: App) -> None:
    router = app.router

    async def create_session(
        session_id: OptionalSessionId = None, description: Description = ""
    ) -> dict[str, Any]:
        """Create a new isolated Python session (its own process and variables). An existing id
        is returned unchanged with status "exists". Omit session_id to get a generated one.
        Creating does not switch to it: pass session_id to tools, or call switch_session."""
        session_id = session_id or f"session-{uuid.uuid4().hex[:8]}"
        record, created = await router.create(app.resolve_session(session_id), description)
        return {
            "session_id": record.session_id,
            "status": "created" if created else "exists",
            "description": record.description,
            "created_at": record.summary(False)["created_at"],
        }

    async def switch_session(session_id: SessionId) -> dict[str, Any]:
        """Make a session your active one: tools called without session_id will use it."""
        record = await router.lookup(session_id)
        previous = app.switch_session(record.session_id)
        return {
            "previous_session": previous,
            "current_session": record.session_id,
            "status": "switched",
        }

    async def list_sessions() -> dict[str, Any]:
        """List every session with its description, status and execution count."""
        await router.ready()
        active = app.active_session()
        return {
            "active_session": active,
            "total_sessions": len(router.sessions),
            "max_sessions": app.settings.max_sessions,
            "sessions": {
                sid: record.summary(sid == active) for sid, record in router.sessions.items()
            },
        }

    async def delete_session(session_id: SessionId) -> dict[str, Any]:
        """Delete a session: its process is killed and its variables are gone (workspace files
        stay). "default" cannot be deleted. If it was your active session, "default" becomes
        active."""
        was_active = app.active_session() == session_id
        await router.delete(session_id)
        app.active.forget_session(session_id)
        return {
            "session_id": session_id,
            "status": "deleted",
            "was_active": was_active,
            "active_session": app.active_session(),
        }

    async def restart_kernel(
        session_id: OptionalSessionId = None,
        preserve_state: Annotated[
            bool, Field(description="Carry picklable variables over to the new process.")
        ] = False,
    ) -> dict[str, Any]:
        """Restart a session's process. With preserve_state, variables that cloudpickle can
        carry are restored; the reply names those it could not."""
        return await router.restart(app.resolve_session(session_id), preserve_state)

    async def interrupt_session(session_id: OptionalSessionId = None) -> dict[str, Any]:
        """Interrupt the code running in a session (like Ctrl-C); its variables are kept."""
        return await router.interrupt(app.resolve_session(session_id))

    register(create_session, annotations={"destructiveHint": False, "idempotentHint": True})
    register(switch_session, annotations={"destructiveHint": False, "idempotentHint": True})
    register(list_sessions, annotations={"readOnlyHint": True})
    register(delete_session, annotations={"destructiveHint": True, "idempotentHint": True})
    register(restart_kernel, annotations={"destructiveHint": True})
    register(interrupt_session, annotations={"destructiveHint": False})
