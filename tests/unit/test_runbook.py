"""The session's run book without Ray or a kernel: runs from several callers one at a time in
arrival order, an id submitted twice runs once, cancel before and during a run, a restart
waits between runs, and finished runs survive an image (export/load)."""

from __future__ import annotations

import asyncio
from typing import Any

from raykernel.actors.runbook import BookedRun, Driver, RunBook
from raykernel.replies import run_reply


class Kernel:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.running = 0
        self.most = 0
        self.interrupted: list[str] = []
        self.hanging: dict[str, asyncio.Future[Any]] = {}

    async def start(self, run: BookedRun) -> dict[str, Any]:
        code = run.args[0]
        self.ran.append(code)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if code == "hang":
                future = asyncio.get_running_loop().create_future()
                self.hanging[run.token] = future
                return await future
            await asyncio.sleep(0.01)
            return dict(run_reply("s", len(self.ran), 0.01))
        finally:
            self.running -= 1

    def interrupt(self, token: str) -> None:
        self.interrupted.append(token)
        future = self.hanging.get(token)
        if future is not None and not future.done():
            future.set_result(dict(run_reply("s", len(self.ran), 0.1, interrupted=True)))


async def _none(*_: Any) -> None:
    return None


def _book(kernel: Kernel) -> RunBook:
    driver = Driver(kernel.start, kernel.interrupt, _none, _none, lambda: 0, lambda: "s")
    return RunBook(driver, grace=0.5)


async def test_runs_from_several_callers_run_one_at_a_time_in_order() -> None:
    kernel = Kernel()
    book = _book(kernel)
    for i in range(6):
        book.book(BookedRun(f"r{i}", "execute", (f"c{i}",), 5.0))
    views = [await book.wait(f"r{i}", 5.0) for i in range(6)]
    assert kernel.ran == [f"c{i}" for i in range(6)]
    assert kernel.most == 1
    assert all(v["status"] == "done" and v["reply"]["success"] for v in views)


async def test_the_same_run_id_twice_is_one_run() -> None:
    kernel = Kernel()
    book = _book(kernel)
    first = book.book(BookedRun("r", "execute", ("once",), 5.0))
    again = book.book(BookedRun("r", "execute", ("once",), 5.0))
    assert again["token"] == first["token"]
    await book.wait("r", 5.0)
    assert kernel.ran == ["once"]


async def test_a_queued_run_is_dropped_and_a_running_one_interrupted() -> None:
    kernel = Kernel()
    book = _book(kernel)
    book.book(BookedRun("long", "execute", ("hang",), 60.0))
    book.book(BookedRun("queued", "execute", ("never",), 60.0))
    await asyncio.sleep(0.05)
    dropped = await book.cancel("queued")
    assert dropped["cancelled"] and dropped["was"] == "queued"
    stopped = await book.cancel("long")
    assert stopped["was"] == "running" and stopped["status"] == "cancelled"
    assert stopped["reply"]["error"]["ename"] == "Cancelled"
    assert stopped["reply"]["state_preserved"] is True
    assert kernel.ran == ["hang"]


async def test_a_run_past_its_timeout_is_interrupted_here() -> None:
    kernel = Kernel()
    book = _book(kernel)
    book.book(BookedRun("r", "execute", ("hang",), 0.05))
    view = await book.wait("r", 5.0)
    assert view["reply"]["error"]["ename"] == "TimeoutError"
    assert view["reply"]["interrupted"] is True


async def test_exclusive_waits_for_the_run_and_holds_the_next() -> None:
    kernel = Kernel()
    book = _book(kernel)
    book.book(BookedRun("a", "execute", ("a",), 5.0))
    await asyncio.sleep(0)
    book.book(BookedRun("b", "execute", ("b",), 5.0))
    async with book.exclusive():
        assert kernel.ran == ["a"] and kernel.running == 0
        await asyncio.sleep(0.05)
        assert kernel.ran == ["a"]  # b waits for the restart
    await book.wait("b", 5.0)
    assert kernel.ran == ["a", "b"]


async def test_finished_runs_travel_in_an_image() -> None:
    kernel = Kernel()
    book = _book(kernel)
    book.book(BookedRun("r", "execute", ("x",), 5.0, background=True))
    await book.wait("r", 5.0)
    assert not book.busy
    other = _book(kernel)
    other.load(book.export())
    view = await other.wait("r", 0)
    assert view["status"] == "done" and view["reply"]["success"] and view["background"]
