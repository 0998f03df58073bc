"""Scheduler: priorities, fairness, caps, cancellation, timeouts, queue positions, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from engine.config import EngineConfig
from engine.errors import JobCancelled, JobTimeout, QueueFull, SchedulerStopped, UserQueueFull
from engine.scheduler import Job, JobContext, JobState, Priority, Scheduler, dispatch_order
from tests.auxil.eventually import HANG_S, eventually


def make_scheduler(**overrides: Any) -> Scheduler:
    cfg = EngineConfig(**{"queue_size": 16, "max_pending_per_user": 16, **overrides})
    return Scheduler(cfg)


@pytest.fixture
async def sched() -> AsyncIterator[Scheduler]:
    s = make_scheduler()
    s.add_resource("llm")
    await s.start()
    yield s
    await s.stop(grace_s=1)


class Blocker:
    """A job function that waits for ``release`` (checking for cancel), logging its run."""

    def __init__(self, log: list[str], name: str, release: threading.Event) -> None:
        self.log, self.name, self.release = log, name, release
        self.saw_cancel = False

    def __call__(self, ctx: JobContext) -> str:
        self.log.append(self.name)
        while not self.release.wait(0.005):
            if ctx.cancelled:
                self.saw_cancel = True
                return "stopped"
        return self.name


def quick(log: list[str], name: str) -> Callable[[JobContext], str]:
    def run(ctx: JobContext) -> str:
        log.append(name)
        return name

    return run


async def drain(*jobs: Job[Any]) -> None:
    await asyncio.wait([asyncio.ensure_future(j.result()) for j in jobs], timeout=HANG_S)


async def hold_worker(sched: Scheduler, log: list[str], user: str = "holder") -> tuple[
    Job[str], threading.Event
]:
    release = threading.Event()
    job = sched.submit("llm", Blocker(log, "hold", release), user=user, kind="chat",
                       priority=Priority.INTERACTIVE)
    await eventually(lambda: job.state is JobState.RUNNING)
    return job, release


async def test_priority_chat_before_story_before_batch(sched: Scheduler) -> None:
    log: list[str] = []
    hold, release = await hold_worker(sched, log)
    jobs = [
        sched.submit("llm", quick(log, "batch"), user="u1", kind="b", priority=Priority.BATCH),
        sched.submit("llm", quick(log, "story"), user="u2", kind="s", priority=Priority.STORY),
        sched.submit("llm", quick(log, "chat"), user="u3", kind="c",
                     priority=Priority.INTERACTIVE),
    ]
    release.set()
    await drain(hold, *jobs)
    assert log == ["hold", "chat", "story", "batch"]


async def test_one_users_ten_jobs_do_not_starve_another(sched: Scheduler) -> None:
    log: list[str] = []
    hold, release = await hold_worker(sched, log)
    greedy = [sched.submit("llm", quick(log, f"a{i}"), user="alice", kind="chat",
                           priority=Priority.INTERACTIVE) for i in range(10)]
    other = sched.submit("llm", quick(log, "b0"), user="bob", kind="chat",
                         priority=Priority.INTERACTIVE)
    assert other.position == 2  # right after alice's first job, not after all ten
    release.set()
    await drain(hold, *greedy, other)
    assert log[:3] == ["hold", "a0", "b0"]
    assert log[3:] == [f"a{i}" for i in range(1, 10)]


async def test_dispatch_order_round_robins_users_least_recently_served_first() -> None:
    jobs: list[Job[str]] = []
    for user, n in (("a", 3), ("b", 2), ("c", 1)):
        for _ in range(n):
            jobs.append(Job(id=len(jobs) + 1, resource="r", kind="k", priority=Priority.STORY,
                            user=user, fn=quick([], user), timeout_s=None, on_position=None,
                            created=0.0))
    # "b" was served a moment ago, "c" long ago, "a" never:
    order = dispatch_order(jobs, {"b": 10, "c": 3}, counter=10)
    assert [j.user for j in order] == ["a", "c", "b", "a", "b", "a"]
    assert [j.id for j in order if j.user == "a"] == [1, 2, 3]  # FIFO within a user


async def test_running_cap_per_user_with_two_workers() -> None:
    sched = make_scheduler(max_running_per_user=1)
    sched.add_resource("api", workers=2)
    await sched.start()
    log: list[str] = []
    release = threading.Event()
    a1 = sched.submit("api", Blocker(log, "a1", release), user="a", kind="c",
                      priority=Priority.INTERACTIVE)
    a2 = sched.submit("api", Blocker(log, "a2", release), user="a", kind="c",
                      priority=Priority.INTERACTIVE)
    b1 = sched.submit("api", Blocker(log, "b1", release), user="b", kind="c",
                      priority=Priority.INTERACTIVE)
    await eventually(lambda: len(log) == 2)
    await asyncio.sleep(0.05)
    assert sorted(log) == ["a1", "b1"]  # a2 waits although a worker is free
    assert a2.state is JobState.QUEUED
    release.set()
    await drain(a1, a2, b1)
    assert log[2] == "a2"
    await sched.stop()


async def test_queue_full_and_per_user_cap_reject_clearly() -> None:
    sched = make_scheduler(queue_size=2, max_pending_per_user=2)
    sched.add_resource("llm")
    await sched.start()
    log: list[str] = []
    hold, release = await hold_worker(sched, log, user="h")
    x = sched.submit("llm", quick(log, "x"), user="u1", kind="c", priority=Priority.INTERACTIVE)
    y = sched.submit("llm", quick(log, "y"), user="u1", kind="c", priority=Priority.INTERACTIVE)
    with pytest.raises(UserQueueFull) as user_full:
        sched.submit("llm", quick(log, "z"), user="u1", kind="c", priority=Priority.INTERACTIVE)
    assert "/cancel" in user_full.value.user_message
    with pytest.raises(QueueFull) as full:
        sched.submit("llm", quick(log, "w"), user="u2", kind="c", priority=Priority.INTERACTIVE)
    assert "try again" in full.value.user_message
    release.set()
    await drain(hold, x, y)
    await sched.stop()
    assert log == ["hold", "x", "y"]


async def test_cancel_queued_job_never_runs(sched: Scheduler) -> None:
    log: list[str] = []
    hold, release = await hold_worker(sched, log)
    victim = sched.submit("llm", quick(log, "victim"), user="u", kind="c",
                          priority=Priority.INTERACTIVE)
    after = sched.submit("llm", quick(log, "after"), user="v", kind="c",
                         priority=Priority.INTERACTIVE)
    assert sched.cancel(victim)
    with pytest.raises(JobCancelled):
        await victim.result()
    assert victim.state is JobState.CANCELLED
    release.set()
    await drain(hold, after)
    assert log == ["hold", "after"]
    assert not sched.cancel(victim)  # already finished


async def test_cancel_running_job_stops_it_cooperatively(sched: Scheduler) -> None:
    log: list[str] = []
    release = threading.Event()
    blocker = Blocker(log, "long", release)
    job = sched.submit("llm", blocker, user="u", kind="c", priority=Priority.INTERACTIVE)
    nxt = sched.submit("llm", quick(log, "next"), user="v", kind="c",
                       priority=Priority.INTERACTIVE)
    await eventually(lambda: job.state is JobState.RUNNING)
    assert sched.cancel_user("u") == 1
    with pytest.raises(JobCancelled):
        await job.result()
    assert blocker.saw_cancel
    assert await nxt.result() == "next"
    assert nxt.state is JobState.DONE


async def test_cancel_user_leaves_other_users_alone(sched: Scheduler) -> None:
    log: list[str] = []
    hold, release = await hold_worker(sched, log, user="h")
    mine = [sched.submit("llm", quick(log, f"m{i}"), user="me", kind="c",
                         priority=Priority.INTERACTIVE) for i in range(3)]
    theirs = sched.submit("llm", quick(log, "t"), user="them", kind="c",
                          priority=Priority.INTERACTIVE)
    assert sched.cancel_user("me") == 3
    assert sched.cancel_user("me") == 0
    release.set()
    await drain(hold, theirs, *mine)
    assert log == ["hold", "t"]
    assert all(j.state is JobState.CANCELLED for j in mine)


async def test_timeout_cancels_and_frees_resource_only_when_thread_returns(
    sched: Scheduler,
) -> None:
    log: list[str] = []
    returned = threading.Event()

    def slow(ctx: JobContext) -> str:
        log.append("slow")
        while not ctx.cancelled:
            time.sleep(0.005)
        time.sleep(0.05)  # a token that takes a while to finish after the cancel
        returned.set()
        return "late"

    def second(ctx: JobContext) -> str:
        log.append("second-started-after-return" if returned.is_set() else "overlap")
        return "ok"

    job = sched.submit("llm", slow, user="u", kind="c", priority=Priority.INTERACTIVE,
                       timeout_s=0.1)
    nxt = sched.submit("llm", second, user="v", kind="c", priority=Priority.INTERACTIVE)
    with pytest.raises(JobTimeout) as err:
        await job.result()
    assert "too long" in err.value.user_message
    assert job.state is JobState.TIMED_OUT
    assert await nxt.result() == "ok"
    assert log == ["slow", "second-started-after-return"]


async def test_waiting_too_long_in_queue_times_out() -> None:
    sched = make_scheduler(queue_wait_timeout_s=0.1)
    sched.add_resource("llm")
    await sched.start()
    log: list[str] = []
    _hold, release = await hold_worker(sched, log)
    waiting = sched.submit("llm", quick(log, "w"), user="u", kind="c",
                           priority=Priority.INTERACTIVE)
    with pytest.raises(JobTimeout):
        await waiting.result()
    release.set()
    await sched.stop()
    assert log == ["hold"]


async def test_queue_position_callbacks_count_down(sched: Scheduler) -> None:
    log: list[str] = []
    hold, release = await hold_worker(sched, log)
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    gates = {n: threading.Event() for n in seen}
    jobs = {
        n: sched.submit("llm", Blocker(log, n, gates[n]), user=n, kind="c",
                        priority=Priority.INTERACTIVE, on_position=seen[n].append)
        for n in seen
    }
    assert seen == {"a": [1], "b": [2], "c": [3]}
    release.set()
    for n in seen:
        await eventually(lambda n=n: jobs[n].state is JobState.RUNNING)  # type: ignore[misc]
        gates[n].set()
    await drain(hold, *jobs.values())
    assert seen == {"a": [1], "b": [2, 1], "c": [3, 2, 1]}


async def test_no_position_message_when_a_worker_is_free(sched: Scheduler) -> None:
    seen: list[int] = []
    job = sched.submit("llm", quick([], "x"), user="u", kind="c",
                       priority=Priority.INTERACTIVE, on_position=seen.append)
    await job.result()
    assert seen == []


async def test_failing_position_callback_does_not_break_the_queue(sched: Scheduler) -> None:
    def broken(pos: int) -> None:
        raise RuntimeError("adapter bug")

    log: list[str] = []
    _hold, release = await hold_worker(sched, log)
    job = sched.submit("llm", quick(log, "x"), user="u", kind="c",
                       priority=Priority.INTERACTIVE, on_position=broken)
    release.set()
    assert await job.result() == "x"


async def test_stream_delivers_chunks_in_order_then_result(sched: Scheduler) -> None:
    def words(ctx: JobContext) -> int:
        for i in range(200):
            ctx.emit(f"{i} ")
        return 200

    job = sched.submit("llm", words, user="u", kind="c", priority=Priority.INTERACTIVE)
    chunks = [c async for c in job.stream()]
    assert chunks == [f"{i} " for i in range(200)]
    assert await job.result() == 200


async def test_job_error_is_raised_to_the_consumer(sched: Scheduler) -> None:
    def boom(ctx: JobContext) -> None:
        raise ValueError("model exploded")

    job = sched.submit("llm", boom, user="u", kind="c", priority=Priority.INTERACTIVE)
    with pytest.raises(ValueError, match="exploded"):
        await job.result()
    assert job.state is JobState.FAILED
    ok = sched.submit("llm", quick([], "fine"), user="u", kind="c",
                      priority=Priority.INTERACTIVE)
    assert await ok.result() == "fine"  # the worker survived


async def test_all_jobs_of_a_resource_run_on_one_thread(sched: Scheduler) -> None:
    def ident(ctx: JobContext) -> int:
        return threading.get_ident()

    jobs = [sched.submit("llm", ident, user=f"u{i % 3}", kind="c",
                         priority=Priority.INTERACTIVE) for i in range(6)]
    idents = {await j.result() for j in jobs}
    assert len(idents) == 1
    assert threading.get_ident() not in idents


async def test_stop_drops_queued_jobs_and_cancels_running_after_grace() -> None:
    sched = make_scheduler()
    sched.add_resource("llm")
    await sched.start()
    log: list[str] = []
    hold, _never = await hold_worker(sched, log)
    queued = sched.submit("llm", quick(log, "q"), user="u", kind="c",
                          priority=Priority.INTERACTIVE)
    # The held job never ends by itself: stop() returning at all means the grace was
    # applied and the job cancelled (no wall-clock bound needed).
    await sched.stop(grace_s=0.1)
    with pytest.raises(SchedulerStopped):
        await queued.result()
    with pytest.raises(JobCancelled):
        await hold.result()
    with pytest.raises(SchedulerStopped):
        sched.submit("llm", quick(log, "late"), user="u", kind="c",
                     priority=Priority.INTERACTIVE)
    assert log == ["hold"]


async def test_stop_lets_running_job_finish_within_grace() -> None:
    sched = make_scheduler()
    sched.add_resource("llm")
    await sched.start()

    def short(ctx: JobContext) -> str:
        time.sleep(0.1)
        return "finished"

    job = sched.submit("llm", short, user="u", kind="c", priority=Priority.INTERACTIVE)
    await eventually(lambda: job.state is JobState.RUNNING)
    await sched.stop(grace_s=5)
    assert await job.result() == "finished"


async def test_a_cold_model_loads_once_outside_any_job(sched: Scheduler) -> None:
    """Loading is never part of a job (so never part of its timeout); callers share it."""
    gate = threading.Event()
    loads: list[str] = []
    log: list[str] = []

    def load() -> None:
        loads.append("load")
        gate.wait(60)

    first = asyncio.create_task(sched.warm("llm", "model", load))
    second = asyncio.create_task(sched.warm("llm", "model", load))
    await eventually(lambda: loads == ["load"])
    assert sched.stats()["llm"] == {"queued": 0, "running": 0}
    gate.set()
    await asyncio.gather(first, second)
    await sched.warm("llm", "model", load)  # loaded: nothing happens
    job = sched.submit("llm", quick(log, "after"), user="u", kind="chat",
                       priority=Priority.INTERACTIVE, timeout_s=60)
    assert await job.result() == "after" and loads == ["load"]


async def test_a_failed_load_is_tried_again(sched: Scheduler) -> None:
    tries: list[int] = []

    def load() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("disk not mounted yet")

    with pytest.raises(RuntimeError):
        await sched.warm("llm", "model", load)
    await sched.warm("llm", "model", load)
    assert len(tries) == 2


async def test_stopping_before_a_model_is_warm_is_quiet() -> None:
    """Issue 33: /quit before the speech models had warmed printed a traceback: the
    warming ran after the workers' threads were shut down ("cannot schedule new futures
    after shutdown"). A model wanted only after the stop is not loaded; one loading when
    it comes is waited for; nothing raises but SchedulerStopped."""
    s = make_scheduler()
    s.add_resource("llm")
    await s.start()
    loads: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(HANG_S)
        loads.append("slow")

    loading = asyncio.create_task(s.warm("llm", "first", slow))
    await asyncio.to_thread(started.wait)
    late = asyncio.create_task(s.warm("llm", "late", lambda: loads.append("late")))
    stopping = asyncio.create_task(s.stop(grace_s=1))
    release.set()
    await stopping
    done = await asyncio.gather(loading, late, return_exceptions=True)
    assert all(r is None or isinstance(r, SchedulerStopped | asyncio.CancelledError)
               for r in done), done
    assert "late" not in loads


async def test_a_held_job_waits_at_its_pause_point_until_released(sched: Scheduler) -> None:
    reached = threading.Event()

    def run(ctx: JobContext) -> str:
        ctx.emit("before")
        reached.set()
        ctx.pause()
        return "after"

    job = sched.submit("llm", run, user="u", kind="chat", priority=Priority.INTERACTIVE,
                       held=True)
    chunks = job.chunks()
    assert await anext(chunks) == "before"
    await asyncio.to_thread(reached.wait, HANG_S)
    assert not job.state.finished  # held at its pause point
    job.release()
    assert await job.result() == "after"


async def test_a_held_job_goes_on_when_cancelled_or_when_its_hold_runs_out(
        sched: Scheduler) -> None:
    paused = threading.Event()

    def run(ctx: JobContext) -> str:
        paused.set()
        ctx.pause()
        return "cancelled" if ctx.cancelled else "went on"

    job = sched.submit("llm", run, user="u", kind="chat", priority=Priority.INTERACTIVE,
                       held=True)
    await asyncio.to_thread(paused.wait, HANG_S)
    sched.cancel(job)
    with pytest.raises(JobCancelled):
        await job.result()

    def forgotten(ctx: JobContext) -> bool:
        ctx.pause(limit_s=0.05)  # nobody releases it
        ctx.pause(limit_s=10 * HANG_S)  # the hold is over: no second wait
        return True

    left = sched.submit("llm", forgotten, user="u", kind="chat", priority=Priority.INTERACTIVE,
                        held=True)
    assert await asyncio.wait_for(left.result(), HANG_S)
