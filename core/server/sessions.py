"""``app.sessions``: what a plugin tool may do with a session (docs/plugins.md).

``call_function`` runs a function inside the session's kernel, next to the user's variables,
and returns its value: the way for a tool to compute something in a session without writing
code into the user's history or scraping stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle

from raykernel import errors
from raykernel.errors import FunctionFailed, InvalidArgument, KernelDied, SessionBusy
from raykernel.sessions.router import SessionRouter
from raykernel.settings import Settings


class Sessions:
    def __init__(
        self, settings: Settings, router: SessionRouter, resolve: Callable[[str | None], str]
    ) -> None:
        self.settings = settings
        self.router = router
        self.resolve = resolve

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
        seconds = self.settings.default_timeout if timeout is None else timeout
        reply = await self.router.call_function(qualified, payload, limit, seconds)
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
