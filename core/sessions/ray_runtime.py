"""Starting or joining Ray in the background, so the MCP handshake never waits for it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from raykernel.errors import RayUnavailable
from raykernel.settings import Settings

from .local_ray import LocalHead, init_kwargs

log = logging.getLogger(__name__)


class RayRuntime:
    """Owns this process's connection to Ray: started once, shut down once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_id: str | None = None
        self._task: asyncio.Future[None] | None = None
        self._started_here = False
        self._head: LocalHead | None = None
        self._signals_reclaimed = False

    @property
    def started(self) -> bool:
        """Whether this process is connected to Ray (or is connecting)."""
        return self._task is not None and self._task.done() and self._task.exception() is None

    def start(self) -> None:
        """Begin connecting in a worker thread; ``ready()`` waits for it."""
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self._connect))

    async def ready(self) -> None:
        if self._task is None:
            self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        except RayUnavailable:
            raise
        except Exception as exc:  # ray.init raises many types; the client needs one
            raise RayUnavailable(explain_failure(exc, self.settings.ray_address)) from exc
        self._reclaim_signals()

    def _reclaim_signals(self) -> None:
        """Ray's core worker installs a C-level handler for SIGTERM/SIGINT that prints a stack
        and re-raises, killing the process before a graceful shutdown (and Ray's own cleanup) can
        finish. Re-installing the Python-level handlers puts the server's own back in charge."""
        if self._signals_reclaimed or threading.current_thread() is not threading.main_thread():
            return
        self._signals_reclaimed = True
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            if handler is not None:
                signal.signal(signum, handler)

    def _connect(self) -> None:
        import ray

        kwargs = init_kwargs(self.settings.namespace, self.settings.dashboard)
        address = self.settings.ray_address
        if ray.is_initialized():
            log.info("Ray already initialized in this process; reusing it")
        elif address:
            log.info("connecting to Ray at %s", address)
            _use_token_if_available()
            kwargs.pop("include_dashboard")  # the cluster's own choice
            ray.init(address=address, **kwargs)
        else:
            self._start_local(kwargs)
        self._refuse_inside_ray_temp()
        self.node_id = ray.get_runtime_context().get_node_id()
        log.info("Ray ready (node %s)", self.node_id)

    def _refuse_inside_ray_temp(self) -> None:
        """Ray's temp folder as this node has it (a cluster's may be anywhere): the workspace
        and state_dir must be outside it (see ``Settings.refuse_inside``)."""
        try:
            from ray._private.worker import global_worker

            temp = Path(global_worker.node.get_session_dir_path()).parent
        except Exception:  # another Ray version: each session actor checks on its node
            return
        try:
            self.settings.refuse_inside(temp)
        except ValueError as exc:
            log.error("%s", exc)
            raise RayUnavailable(str(exc)) from None

    def _start_local(self, kwargs: dict[str, Any]) -> None:
        """A Ray of our own, never another one running on this machine (someone else's, on a
        shared host): the lean head, else what ``ray.init(address="local")`` starts."""
        import ray

        log.info("starting a local Ray")
        head = LocalHead(self.settings.dashboard)
        try:
            address = head.start()
        except Exception as exc:  # another Ray version: its private parameters moved
            head.shutdown()
            log.warning("starting Ray's usual processes (the lean head failed: %s)", exc)
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                _system_config={"memory_monitor_refresh_ms": 0},  # see LEAN_SYSTEM_CONFIG
                **kwargs,
            )
        else:
            kwargs.pop("include_dashboard")
            try:
                ray.init(address=address, **kwargs)
            except BaseException:
                head.shutdown()
                raise
            self._head = head
        self._started_here = True

    def shutdown(self) -> None:
        """Disconnect (and stop the local Ray if this runtime started it)."""
        if not self._started_here:
            return
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self._head is not None:
            self._head.shutdown()
            self._head = None
        self._started_here = False


def _use_token_if_available() -> None:
    """Ray turns token auth on by itself for a cluster it finds, never for an explicit address:
    the front end would then fail to join a token cluster (Ray 2.60's default) after a 20 s wait
    even with the token at hand. A token-mode client also joins a cluster without auth, so use
    the token whenever one is there and RAY_AUTH_MODE does not say otherwise."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: its own rules apply
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


AUTH_HINT = (
    "The cluster uses Ray token authentication (on by default since Ray 2.60): give this "
    "process the cluster's token with RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."
)


def explain_failure(exc: BaseException, address: str | None) -> str:
    """One message for a failed ray.init: where, why (each cause's first line), and the fix
    when anything in the chain speaks of authentication (a missing or wrong cluster token)."""
    reasons: list[str] = []
    texts: list[str] = []
    link: BaseException | None = exc
    while link is not None and len(reasons) < 4:
        text = str(link).strip()
        texts.append(text)
        first = text.splitlines()[0] if text else type(link).__name__
        reasons.append(
            first.replace("Last connection error: Traceback (most recent call last):", "").strip()
        )
        link = link.__cause__ or link.__context__
    message = f"Ray could not be {'reached at ' + address if address else 'started'}: "
    message += "; ".join(reversed(reasons))
    if any("auth" in text.lower() for text in texts):
        message += " " + AUTH_HINT
    return message
