"""The App's services about sessions: ``app.sessions`` (what a plugin tool may do with a session,
docs/plugins.md section 6) and ``app.runs`` (background runs).

Every method takes a session id as a tool receives it: None for the caller's active session, a
plain id for one of the caller's own, ``<owner>/<id>`` for an admin naming another identity's
(a qualified id ``app.resolve_session`` gave resolves to itself). Another identity's session is
``SessionNotFound``. The router behind these is the server's own; plugins never name it.

``call_function`` runs a function inside the session's kernel, next to the user's variables,
and returns its value: the way for a tool to compute something in a session without writing
code into the user's history or scraping stdout. ``execute`` and ``run_script`` are runs, in
the session's history, as ``run_python_code`` and ``run_script`` make them.

Background runs: ``run_python_code {background: true}`` answers at once with a run id, so a
long job never meets a client's request timeout; ``get_run`` and ``cancel_run`` follow it.

A run lives in its session's run book (in the session's actor), not in a front end: it queues
there behind whatever runs (from any front end), is interrupted the same way, is never re-run,
and finishes if the front end that took it dies. The registry says which session a run id
belongs to, so any front end answers about any run; a hibernated session's finished runs are
read from its image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import cloudpickle

from raykernel import errors
from raykernel.actors.egress import parse_rules
from raykernel.actors.installer import MAX_PACKAGES, parse_requirements
from raykernel.errors import (
    FunctionFailed,
    InvalidArgument,
    KernelDied,
    NotFound,
    RunNotFound,
    SessionBusy,
    SourceBuildRefused,
)
from raykernel.replies import RunReply
from raykernel.server.callers import Caller
from raykernel.server.progress import progress_for_request
from raykernel.sessions.cluster import Placement
from raykernel.sessions.handle import SessionHandle
from raykernel.sessions.router import OnStart, SessionRouter
from raykernel.settings import Settings
from raykernel.workspace import Workspace


class Sessions:
    # The most packages one ``install`` takes (an argument's schema may say so).
    MAX_PACKAGES = MAX_PACKAGES

    def __init__(
        self,
        settings: Settings,
        router: SessionRouter,
        resolve: Callable[[str | None], str],
        workspace_of: Callable[[str], Workspace],
    ) -> None:
        self.settings = settings
        self.router = router
        self.resolve = resolve
        self.workspace_of = workspace_of

    def timeout_for(self, timeout: float | None) -> float:
        """A run's timeout: the one asked for, else the configured default."""
        return self.settings.default_timeout if timeout is None else timeout

    # -- runs -----------------------------------------------------------------------------------

    async def execute(
        self,
        session_id: str | None,
        code: str,
        timeout: float | None = None,
        *,
        progress: bool = False,
    ) -> RunReply:
        """Run ``code`` in the session as ``run_python_code`` does: in its turn (after the run
        in progress and those queued), in its history and execution count, seen by the
        ``before_execute`` / ``after_execute`` hooks, interrupted past ``timeout`` seconds
        (``settings.default_timeout``). ``progress``: while it runs, its output so far goes to
        the current request's client as MCP progress notifications (if it asked for them).
        The ``RunReply``; code that fails is a reply with ``success`` False, not an error."""
        qualified = self.resolve(session_id)
        async with self._progress(progress) as on_start:
            return await self.router.execute(qualified, code, self.timeout_for(timeout), on_start)

    async def run_script(
        self,
        session_id: str | None,
        path: str,
        args: list[str] | tuple[str, ...] = (),
        timeout: float | None = None,
        *,
        progress: bool = False,
    ) -> RunReply:
        """Run the workspace file ``path`` (relative to the workspace of the session's owner,
        e.g. ``scripts/clean.py``) in the session like ``%run``: as ``__main__``, with
        ``sys.argv`` the file's path and ``args``, its names left in the namespace; a run, as
        ``execute`` makes one."""
        qualified = self.resolve(session_id)
        # An early, clear refusal of a path outside the owner's workspace or in the store. What
        # protects is elsewhere: the session's actor reads the script once, when the run
        # starts, beneath the workspace's root and following no link (Workspace.script).
        workspace = self.workspace_of(qualified)
        workspace.resolve(path)
        script = Path(*workspace.parts(path))  # relative to the owner's workspace
        async with self._progress(progress) as on_start:
            return await self.router.run_script(
                qualified, script, list(args), self.timeout_for(timeout), on_start
            )

    async def install(
        self, session_id: str | None, packages: list[str], *, progress: bool = False
    ) -> dict[str, Any]:
        """Install requirements (``requests``, ``pandas>=2.2``; at most ``MAX_PACKAGES``; URLs
        only where the server allows them, a ``file://`` one inside the workspace) into the
        session's own folder, in its turn, as ``install_dependencies`` does. A bad spec is
        ``InvalidArgument`` before anything reaches the session; a package that would build
        from source where the server does not allow it, ``SourceBuildRefused``. The installer's
        reply (``success``, ``installed``, ...)."""
        qualified = self.resolve(session_id)
        # A local package must be in the session's workspace (its session checks again).
        for requirement in parse_requirements(
            packages, allow_urls=self.settings.allow_package_urls
        ):
            if (requirement.url or "").startswith("file://"):
                self.workspace_of(qualified).resolve(requirement.url.removeprefix("file://"))
        async with self._progress(progress) as on_start:
            reply = await self.router.install(qualified, packages, on_start)
        error = reply.get("error") or {}
        if error.get("ename") == "SourceBuildRefused":
            raise SourceBuildRefused(str(error.get("evalue")))
        return reply

    @contextlib.asynccontextmanager
    async def _progress(self, wanted: bool) -> AsyncIterator[OnStart | None]:
        if not wanted:
            yield None
            return
        async with progress_for_request(self.router) as on_start:
            yield on_start

    # -- the session itself ---------------------------------------------------------------------

    async def create(
        self,
        session_id: str,
        description: str = "",
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        node_id: str | None = None,
        node_affinity: Literal["hard", "soft"] = "hard",
        network: str | list[str] | None = None,
        checkpoint: str | None = None,
        environment: str | None = None,
    ) -> dict[str, Any]:
        """Create the caller's session ``session_id``, as ``create_session`` does (the
        arguments are its own); an existing one is left as it is (``created`` False). A bad
        network destination, or a placement no node can satisfy, is refused before anything
        starts. What ``create_session`` answers from: ``session_id`` (qualified),
        ``created``, ``description``, ``created_at``, ``node_id``, ``resources``,
        ``network``, ``checkpoint``, ``environment`` (its name, or None), ``isolation``."""
        if isinstance(network, list):
            parse_rules(network)  # a bad destination is refused before anything starts
        placement = Placement(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            memory=memory,
            resources=dict(resources or {}),
            node_id=node_id,
            node_affinity=node_affinity,
        )
        record, created = await self.router.create(
            self.resolve(session_id), description, placement, network, checkpoint, environment
        )
        summary = record.summary(False)
        return {
            "session_id": record.qualified,
            "created": created,
            "description": record.description,
            "created_at": summary["created_at"],
            "node_id": summary["node_id"],
            "resources": summary["resources"],
            "network": record.network,
            "checkpoint": record.checkpoint,
            "environment": summary["environment"],
            "isolation": record.isolation,
        }

    async def delete(self, session_id: str) -> None:
        """Delete the session: its processes are killed, its files stay (not "default")."""
        await self.router.delete(self.resolve(session_id))

    async def set_network(self, session_id: str, network: list[str]) -> dict[str, Any]:
        """New destinations for an allow-listed session (for its new connections), as
        ``set_session_network`` takes them; its report."""
        parse_rules(network)
        return await self.router.set_network(self.resolve(session_id), list(network))

    async def hibernate(self, session_id: str | None) -> dict[str, Any]:
        """Save the session's variables and history and free its processes, in its turn; the
        next call to it resumes it. ``hibernate_session``'s reply."""
        return await self.router.hibernate(self.resolve(session_id))

    async def interrupt(self, session_id: str | None) -> dict[str, Any]:
        """Interrupt the session's run in progress, if any (Ctrl-C; its variables are kept);
        does not wait behind it. ``interrupt_session``'s reply."""
        return await self.router.interrupt(self.resolve(session_id))

    # -- what the session holds (answered in its turn, from its live namespace) ------------------

    async def variables(self, session_id: str | None) -> list[dict[str, Any]]:
        """The session's variables: name, type, a short repr (not modules or _names)."""
        return await self.router.call(self.resolve(session_id), SessionHandle.variables)

    async def history(
        self, session_id: str | None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """The session's runs (the ``last`` ones; None: all it keeps): code, status, start,
        duration, the start of their output, as ``get_history`` shows them."""
        return await self.router.call(self.resolve(session_id), lambda h: h.history(last))

    async def cells(self, session_id: str | None) -> list[dict[str, Any]]:
        """The session's whole history, each run with ``cell_outputs``: its outputs as a
        Jupyter notebook records them (see ``notebook``)."""
        return await self.router.call(self.resolve(session_id), lambda h: h.cells())

    async def complete(
        self, session_id: str | None, code: str, cursor_pos: int | None = None
    ) -> dict[str, Any]:
        """Completions at ``cursor_pos`` of ``code`` (None: its end) from the session's live
        names: ``matches``, ``cursor_start``, ``cursor_end``."""
        return await self.router.call(
            self.resolve(session_id), lambda h: h.complete(code, cursor_pos)
        )

    async def inspect(
        self, session_id: str | None, code: str, cursor_pos: int | None = None
    ) -> dict[str, Any]:
        """What the name at ``cursor_pos`` of ``code`` is in the session (type, signatures,
        docstring); nothing is run."""
        return await self.router.call(
            self.resolve(session_id), lambda h: h.inspect(code, cursor_pos)
        )

    # -- functions ------------------------------------------------------------------------------

    async def call_function(
        self,
        session_id: str | None,
        fn: Callable[..., Any],
        *args: Any,
        timeout: float | None = None,
        wait: bool = True,
        max_result_bytes: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """``fn(namespace, *args, **kwargs)`` in the kernel of the caller's session
        ``session_id`` (None: the caller's active session), and its value.

        ``fn`` travels by value (cloudpickle: a closure or a lambda is fine; modules it imports
        must be importable in the kernel). ``namespace`` is a read-only view of the session's
        variables. The value comes back as JSON data (dicts, lists, strings, numbers,
        booleans, None; NaN becomes None) of at most ``max_result_bytes``
        (``settings.max_result_bytes`` by default). What ``fn`` prints is dropped.

        It runs in the session's turn, after the run in progress and those queued (``wait``
        False: ``SessionBusy`` instead), under the kernel's confinement, and past ``timeout``
        seconds (``settings.default_timeout``) it is interrupted like a run. It is not in the
        session's history or execution count, and ``before_execute`` hooks do not see it.

        A ``RaykernelError`` ``fn`` raises on purpose (a plugin's own subclass too, if the
        front end has imported it) is raised here as itself, with its fields.

        Raises ``FunctionFailed`` (``ename`` names the exception ``fn`` raised,
        ``KeyboardInterrupt``, ``TimeoutError``, ``ResultNotJSON`` or ``ResultTooLarge``),
        ``SessionNotFound``, ``SessionBusy``, ``KernelDied``.
        """
        qualified = self.resolve(session_id)
        limit = self.settings.max_result_bytes
        if max_result_bytes is not None:
            if max_result_bytes < 1:
                raise InvalidArgument("max_result_bytes must be positive")
            limit = min(limit, max_result_bytes)
        try:
            payload = _by_value(fn, args, kwargs)
        except Exception as exc:
            raise InvalidArgument(f"the function cannot be shipped to the session: {exc}") from exc
        if not wait:
            record = await self.router.lookup(qualified)
            if record.run_token is not None or record.waiting or record.slot.locked():
                raise SessionBusy(f"session {record.session_id!r} is running code")
        reply = await self.router.call_function(
            qualified, payload, limit, self.timeout_for(timeout)
        )
        if reply.get("success"):
            return json.loads(reply["value_json"])
        error = reply.get("error") or {}
        ename = str(error.get("ename") or "Error")
        if ename == "KernelDied":
            raise KernelDied(str(error.get("evalue")))
        if isinstance(error.get("raised"), dict):  # one of the hierarchy: itself, whole
            raise errors.from_kernel(error["raised"])
        raise FunctionFailed(ename, str(error.get("evalue", "")), str(error.get("traceback", "")))


def _by_value(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle ``fn`` with its code, not as a reference to its module: a plugin's module need
    not be importable (nor readable) inside a confined kernel. Built-in plugins too: in an
    editable install they live outside the package folder the kernel may read."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    scoped = (
        module is not None
        and module.__name__ not in ("__main__", "builtins")
        and (
            not module.__name__.startswith("raykernel.")
            or module.__name__.startswith("raykernel.plugins.")
        )
        and module.__name__ not in cloudpickle.list_registry_pickle_by_value()
    )
    if scoped:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps((fn, args, kwargs))
    finally:
        if scoped:
            cloudpickle.unregister_pickle_by_value(module)


ACTIVE = ("queued", "running")


class Runs:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router

    async def submit(self, session_id: str, code: str, timeout: float) -> dict[str, Any]:
        """Queue ``code`` in the session; the run's view (``run_id``, ``status``)."""
        return await self.router.book_background(session_id, code, timeout)

    async def get(self, run_id: str, caller: Caller, wait: float = 0.0) -> dict[str, Any]:
        qualified = await self._session_of(run_id, caller)
        view = await self.router.run_view(qualified, run_id, wait)
        return shaped(view, caller.shown(qualified))

    async def cancel(self, run_id: str, caller: Caller) -> dict[str, Any]:
        """Stop a queued run before it starts, or interrupt a running one (state kept; a run
        that ignores the interrupt gets its session's kernel replaced, and the reply says
        so)."""
        qualified = await self._session_of(run_id, caller)
        view = await self.router.cancel_run(qualified, run_id)
        return shaped(view, caller.shown(qualified))

    async def for_session(self, qualified: str) -> list[dict[str, str]]:
        """The session's queued and running background runs."""
        try:
            views = await self.router.session_runs(qualified)
        except NotFound:
            return []
        return [
            {"run_id": v["run_id"], "status": v["status"]}
            for v in views
            if v["status"] in ACTIVE and v.get("background")
        ]

    async def listing(self, caller: Caller) -> list[dict[str, Any]]:
        """Recent runs in the caller's sessions (background and foreground, any front end)."""
        by_session = await self.router.registry.runs_of(None)
        visible = [q for q in by_session if caller.visible(q)]
        views = await asyncio.gather(
            *(self.router.session_runs(q) for q in visible), return_exceptions=True
        )
        listing = []
        for qualified, found in zip(visible, views, strict=True):
            if isinstance(found, BaseException):
                continue
            ids = set(by_session[qualified])
            for view in found:
                if view["run_id"] in ids:
                    listing.append(
                        {
                            "run_id": view["run_id"],
                            "session_id": caller.shown(qualified),
                            "status": view["status"],
                            "background": view.get("background", False),
                            "submitted_at": view["submitted_at"],
                        }
                    )
        listing.sort(key=lambda v: v["submitted_at"])
        return listing

    async def _session_of(self, run_id: str, caller: Caller) -> str:
        qualified = await self.router.registry.run_session(run_id)
        if qualified is None or not caller.visible(qualified):
            raise RunNotFound(f"no run {run_id!r}")
        return qualified


def shaped(view: dict[str, Any], session_id: str) -> dict[str, Any]:
    """A run's view as clients see it: no internal token; its reply with every flag."""
    shown: dict[str, Any] = {
        "run_id": view["run_id"],
        "session_id": session_id,
        "status": view["status"],
        "submitted_at": view["submitted_at"],
        "started_at": view["started_at"],
        "finished_at": view["finished_at"],
    }
    if view["status"] == "running":
        shown["output_so_far"] = view.get("output_so_far") or ""
        shown["running_for"] = round(time.time() - (view["started_at"] or time.time()), 3)
    reply = view.get("reply")
    if reply is not None:
        reply = dict(reply)
        reply.pop("kernel_died", None)
        reply.setdefault("interrupted", False)
        reply.setdefault("restarted", False)
        reply.setdefault("state_preserved", not reply["restarted"])
        shown["reply"] = reply
    for key in ("cancelled", "was"):
        if key in view:
            shown[key] = view[key]
    return shown
