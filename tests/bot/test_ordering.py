"""Per-chat order with concurrency across chats (bot/ordering.py)."""

from __future__ import annotations

import asyncio

from bot.ordering import ChatOrder, admitted


async def test_one_chat_in_order_other_chats_at_once_and_admission_frees_the_next() -> None:
    order = ChatOrder()
    log: list[str] = []
    done = {name: asyncio.Event() for name in ("a1", "a2", "a3", "b1")}

    async def turn(name: str, admit: bool) -> None:
        log.append(f"{name} start")
        if admit:
            admitted()  # queued in the engine: the chat's next message may begin
        await done[name].wait()
        log.append(f"{name} end")

    async def until(entry: str) -> None:
        for _ in range(1000):  # a few loop turns at most: nothing here waits for time
            if entry in log:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{entry!r} never happened: {log}")

    tasks = [asyncio.create_task(order.run("a", turn("a1", admit=False))),
             asyncio.create_task(order.run("a", turn("a2", admit=True))),
             asyncio.create_task(order.run("a", turn("a3", admit=False))),
             asyncio.create_task(order.run("b", turn("b1", admit=False)))]
    await until("b1 start")
    assert log == ["a1 start", "b1 start"]  # another chat is not held up; a2 waits for a1
    done["a1"].set()
    await until("a3 start")  # a2 began after a1 ended, and was admitted: a3 began at once
    assert log[2:] == ["a1 end", "a2 start", "a3 start"]
    for event in done.values():
        event.set()
    await asyncio.gather(*tasks)
    assert not order.waiting("a") and not order.waiting("b")


async def test_a_turn_cancelled_while_waiting_never_runs() -> None:
    order = ChatOrder()
    hold = asyncio.Event()
    ran: list[str] = []

    async def turn(name: str) -> None:
        ran.append(name)
        await hold.wait()

    first = asyncio.create_task(order.run("a", turn("first")))
    second = asyncio.create_task(order.run("a", turn("second")))
    await asyncio.sleep(0)
    second.cancel()
    hold.set()
    await first
    assert ran == ["first"] and second.cancelled()
