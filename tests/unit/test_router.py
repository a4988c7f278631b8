"""The router's own logic, and the session's run book, with a fake kernel (no Ray): runs queue
one at a time in order, a run past its timeout is interrupted and keeps its state, code that
ignores the interrupt gets its kernel restarted in place, deaths are reported and revived, and
a crash streak keeps a session dead. tests/reliability/ checks the same against real actors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from raykernel.actors.runbook import BookedRun, Driver, RunBook
from raykernel.errors import SessionUnavailable
from raykernel.replies import run_reply
from raykernel.sessions.capacity import WarmPool
from raykernel.sessions.handle import ActorDied
from raykernel.sessions.record import SessionRecord
from raykernel.sessions.router import SessionRouter
from raykernel.settings import Settings


class FakeHandle:
    """A session actor's handle over a real ``RunBook`` whose kernel runs "ok" (answers after a
    moment), "hang" (until interrupted), "stubborn" (ignores interrupts) and "die" (the actor
    dies) codes; counts how many run at once."""

    in_process = False
    name = None

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.running = 0
        self.most_at_once = 0
        self.kernel_restarts = 0
        self.dead = False
        self.pending: dict[str, tuple[asyncio.Future[Any], str]] = {}
        driver = Driver(
            start=self._start,
            interrupt=self._interrupt,
            replace_kernel=self._replace_kernel,
            revive=self._revive,
            execution_count=lambda: len(self.log),
            session_id=lambda: "s",
        )
        self.book = RunBook(driver, grace=0.3)

    async def _start(self, run: BookedRun) -> dict[str, Any]:
        code = run.args[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.log.append(code)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.pending[run.token] = (future, code)
        if code.startswith("ok"):
            loop.call_later(0.01, future.set_result, run_reply("s", len(self.log), 0.01))
        elif code == "die":
            loop.call_later(0.01, setattr, self, "dead", True)
        try:
            return dict(await future)
        finally:
            self.running -= 1

    def _interrupt(self, token: str) -> None:
        future, code = self.pending[token]
        if code == "hang" and not future.done():
            future.set_result(run_reply("s", len(self.log), 1.0, interrupted=True))

    async def _replace_kernel(self, reason: str) -> None:
        self.kernel_restarts += 1
        for future, _ in self.pending.values():
            if not future.done():
                future.set_result({"kernel_died": reason})

    async def _revive(self) -> None:
        return None

    def _alive(self) -> None:
        if self.dead:
            raise ActorDied("the worker died")

    async def book_run(
        self, run_id: str, kind: str, args: list[Any], timeout: float, background: bool = False
    ) -> dict[str, Any]:
        self._alive()
        return self.book.book(BookedRun(run_id, kind, tuple(args), timeout, background))

    async def wait_run(self, run_id: str, wait: float) -> dict[str, Any]:
        while True:
            self._alive()
            view = await self.book.wait(run_id, 0.02)
            if view["status"] in ("done", "cancelled"):
                return view

    async def cancel_run(self, run_id: str, grace: float) -> dict[str, Any]:
        return await self.book.cancel(run_id)

    async def revive(self, timeout: float) -> None:
        self._alive()

    async def info(self) -> dict[str, Any]:
        self._alive()
        return _info()

    async def restart_kernel(self, reason: str, timeout: float) -> dict[str, Any]:
        self._alive()
        self.kernel_restarts += 1
        return _info()

    def kill(self) -> None:
        self.dead = True


def _info() -> dict[str, Any]:
    return {
        "pid": 4242,
        "kernel_pid": 4243,
        "node_id": "node",
        "node_ip": "127.0.0.1",
        "started_at": 0.0,
        "execution_count": 0,
    }


class FakeLifecycle:
    holder = "test"

    def __init__(self) -> None:
        self.log: list[str] = []
        self.spawned = 0
        self.killed = 0

    async def spawn_local(self, record: SessionRecord) -> None:
        await self.spawn(record, None)

    async def spawn(self, record: SessionRecord, pooled: Any) -> None:
        self.spawned += 1
        record.handle = FakeHandle(self.log)  # type: ignore[assignment]
        self.refresh(record, _info())

    def refresh(self, record: SessionRecord, info: dict[str, Any]) -> None:
        record.pid, record.node_id, record.status = info["pid"], info["node_id"], "healthy"

    async def kill(self, record: SessionRecord) -> None:
        self.killed += 1
        if record.handle is not None:
            record.handle.kill()
        record.handle = None
        record.status = "dead"

    def site_dir(self, record: SessionRecord) -> Path:
        return Path("/nonexistent") / record.session_id

    async def rediscover(self) -> list[SessionRecord]:
        return []


class FakeNodes:
    def is_local(self, node_id: str | None) -> bool:
        return True

    def alive(self, node_id: str | None) -> bool:
        return True


class FakeRuntime:
    node_id = "node"

    def start(self) -> None:
        pass

    async def ready(self) -> None:
        pass


@pytest.fixture
async def router(tmp_path: Path) -> SessionRouter:
    settings = Settings(workspace=tmp_path, interrupt_grace=0.3, max_crash_streak=3, config=None)
    sessions: dict[str, SessionRecord] = {}
    lifecycle = FakeLifecycle()
    router = SessionRouter(
        settings,
        FakeRuntime(),  # type: ignore[arg-type]
        lifecycle,  # type: ignore[arg-type]
        WarmPool(0, lifecycle.spawn),  # type: ignore[arg-type]
        FakeNodes(),  # type: ignore[arg-type]
        sessions,
    )
    await router.ready()
    return router


def _lifecycle(router: SessionRouter) -> FakeLifecycle:
    return router.lifecycle  # type: ignore[return-value]


async def test_runs_queue_one_at_a_time_in_arrival_order(router: SessionRouter) -> None:
    codes = [f"ok-{i}" for i in range(5)]
    replies = await asyncio.gather(*(router.execute("default", c, 5) for c in codes))
    handle = router.sessions["default"].handle
    assert _lifecycle(router).log == codes
    assert handle.most_at_once == 1  # type: ignore[union-attr]
    assert all(r["success"] for r in replies)
    assert router.sessions["default"].execution_count == 5


async def test_a_run_past_its_timeout_is_interrupted_and_keeps_its_state(
    router: SessionRouter,
) -> None:
    reply = await router.execute("default", "hang", 0.05)
    assert reply["interrupted"] is True and reply["state_preserved"] is True
    assert reply["error"]["ename"] == "TimeoutError"
    assert _lifecycle(router).spawned == 1  # no restart


async def test_code_that_ignores_the_interrupt_gets_its_kernel_restarted(
    router: SessionRouter,
) -> None:
    handle = router.sessions["default"].handle
    reply = await router.execute("default", "stubborn", 0.05)
    assert reply["restarted"] is True and reply["state_preserved"] is False
    assert "did not stop" in reply["error"]["evalue"]
    # In place: a new kernel process, the same actor.
    assert handle.kernel_restarts == 1  # type: ignore[union-attr]
    assert _lifecycle(router).spawned == 1 and _lifecycle(router).killed == 0
    assert router.sessions["default"].restart_count == 1
    assert (await router.execute("default", "ok", 5))["success"] is True


async def test_a_death_is_reported_then_revived_with_a_notice(router: SessionRouter) -> None:
    died = await router.execute("default", "die", 5)
    assert died["error"]["ename"] == "KernelDied" and "the worker died" in died["error"]["evalue"]
    assert router.sessions["default"].status == "dead"
    revived = await router.execute("default", "ok", 5)
    assert revived["success"] is True and revived["restarted"] is True
    assert "had died" in revived["notice"]


async def test_a_crash_streak_keeps_the_session_dead(router: SessionRouter) -> None:
    for _ in range(3):
        assert (await router.execute("default", "die", 5))["error"]["ename"] == "KernelDied"
    with pytest.raises(SessionUnavailable, match="3 times in a row"):
        await router.execute("default", "ok", 5)


async def test_a_caller_that_goes_away_has_its_run_stopped_before_the_next(
    router: SessionRouter,
) -> None:
    abandoned = asyncio.ensure_future(router.execute("default", "hang", 60))
    await asyncio.sleep(0.05)
    abandoned.cancel()
    next_reply = await router.execute("default", "ok", 5)
    assert next_reply["success"] is True
    assert _lifecycle(router).log == ["hang", "ok"]
