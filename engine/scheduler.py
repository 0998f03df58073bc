"""Queue and run model work (LLM, later TTS, STT, embeddings) off the event loop.

Each *resource* (one loaded model) has its own thread pool and worker tasks; a
llama.cpp model is not thread-safe, so its resource has exactly one worker and
its calls are serialised on one thread.

Dispatch order within a resource:

1. strict priority (interactive chat, then stories, then batch work);
2. within a priority, fairness across users: the user served least recently goes
   first, so one user's ten jobs do not starve another user's one;
3. within a user, first come first served.

Jobs are cancelled cooperatively: the job function checks ``ctx.cancelled``
between steps (the LLM backend does so per token). A running job that passes its
timeout is cancelled the same way; the resource is only handed to the next job
once the thread has really returned.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from engine.config import EngineConfig
from engine.errors import (
    DoppelError,
    InputError,
    JobCancelled,
    JobTimeout,
    QueueFull,
    SchedulerError,
    SchedulerStopped,
    UserQueueFull,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CUT_BY_RESTART = "Cut short: I'm restarting. Ask me again in a minute."
"""Why a reply still running when the grace of a shutdown ran out stopped."""


class Priority(enum.IntEnum):
    INTERACTIVE = 0
    STORY = 1
    BATCH = 2


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


PositionCallback = Callable[[int], None]
"""Called on the event loop with the job's 1-based place in line whenever it changes."""


class JobContext:
    """What a job function sees while it runs on the resource's thread."""

    def __init__(self, job: Job[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._job = job
        self._loop = loop

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or timed out: stop at the next step."""
        return self._job._cancel_event.is_set()

    def emit(self, chunk: str) -> None:
        """Stream a chunk of output to the job's consumer (thread-safe)."""
        self._loop.call_soon_threadsafe(self._job._chunks.put_nowait, chunk)

    def pause(self, limit_s: float = 2.0) -> None:
        """Wait here while the job is held (``Job.hold``), not at all once it is cancelled;
        a hold nobody releases ends after ``limit_s``."""
        if not self._job._go.wait(limit_s):
            self._job.release()


JobFn = Callable[[JobContext], T]


_END = object()


@dataclass(eq=False)
class Job(Generic[T]):
    """A queued unit of model work and the handle its submitter holds."""

    id: int
    resource: str
    kind: str
    priority: Priority
    user: str
    fn: JobFn[T]
    timeout_s: float | None
    on_position: PositionCallback | None
    created: float
    state: JobState = JobState.QUEUED
    position: int | None = None
    started: float | None = None
    finished: float | None = None
    _future: asyncio.Future[T] = field(init=False, repr=False)
    _chunks: asyncio.Queue[Any] = field(init=False, repr=False)
    _cancel_event: threading.Event = field(init=False, repr=False, default_factory=threading.Event)
    _go: threading.Event = field(init=False, repr=False, default_factory=threading.Event)
    _timed_out: bool = field(init=False, repr=False, default=False)
    _at_shutdown: bool = field(init=False, repr=False, default=False)
    _announced: bool = field(init=False, repr=False, default=False)
    _wait_timer: asyncio.TimerHandle | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._go.set()
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        # Mark the exception as retrieved: a consumer may only read the stream.
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._chunks = asyncio.Queue()

    def hold(self) -> None:
        """Have the job wait at its next pause point (``_go`` clear) until ``release``: work
        the person waits for elsewhere (a call's first words being spoken) runs first."""
        if not self._cancel_event.is_set():
            self._go.clear()

    def release(self) -> None:
        self._go.set()

    def _signal_stop(self) -> None:
        """Cancelled or timed out: stop at the next step, held or not."""
        self._cancel_event.set()
        self._go.set()

    @property
    def wait_s(self) -> float | None:
        return None if self.started is None else self.started - self.created

    @property
    def run_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    async def result(self) -> T:
        """The job function's return value, or the job's error (cancelled, timed out, ...)."""
        return await asyncio.shield(self._future)

    async def stream(self) -> AsyncIterator[str]:
        """Chunks emitted by the job as they come; raises the job's error at the end."""
        while True:
            chunk = await self._chunks.get()
            if chunk is _END:
                break
            yield chunk
        await self.result()

    async def chunks(self) -> AsyncIterator[str]:
        """Like :meth:`stream`, but ends quietly if the job fails: for callers that read
        the outcome from :meth:`result` (or a task built on it) afterwards."""
        try:
            async for chunk in self.stream():
                yield chunk
        except Exception:
            return

    def _finish(self, state: JobState, *, result: Any = None, error: BaseException | None = None,
                now: float) -> None:
        if self.state.finished:
            return
        self.state = state
        self.finished = now
        self.position = None
        if self._wait_timer is not None:
            self._wait_timer.cancel()
        if error is not None:
            self._future.set_exception(error)
        else:
            self._future.set_result(result)
        self._chunks.put_nowait(_END)


@dataclass
class KindMetrics:
    by_state: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    wait_s: float = 0.0
    run_s: float = 0.0

    def record(self, job: Job[Any]) -> None:
        self.by_state[job.state.value] += 1
        self.wait_s += job.wait_s or 0.0
        self.run_s += job.run_s or 0.0


@dataclass
class _Resource:
    name: str
    workers: int
    executor: ThreadPoolExecutor
    pending: list[Job[Any]] = field(default_factory=list)
    running: set[Job[Any]] = field(default_factory=set)
    last_served: dict[str, int] = field(default_factory=dict)
    serve_counter: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def dispatch_order(
    pending: list[Job[Any]], last_served: dict[str, int], counter: int
) -> list[Job[Any]]:
    """The order in which ``pending`` jobs would run if nothing else arrived.

    Strict priority; within a priority the least recently served user goes next
    (users never served go by their oldest job); within a user, FIFO.
    """
    by_prio: dict[int, dict[str, deque[Job[Any]]]] = defaultdict(lambda: defaultdict(deque))
    for job in sorted(pending, key=lambda j: j.id):
        by_prio[job.priority][job.user].append(job)
    served = dict(last_served)
    order: list[Job[Any]] = []
    for prio in sorted(by_prio):
        queues = by_prio[prio]
        heap = [(served.get(u, -1), q[0].id, u) for u, q in queues.items()]
        heapq.heapify(heap)
        while heap:
            _, _, user = heapq.heappop(heap)
            queue = queues[user]
            order.append(queue.popleft())
            counter += 1
            served[user] = counter
            if queue:
                heapq.heappush(heap, (counter, queue[0].id, user))
    return order


class Scheduler:
    """Per-resource queues with priorities, per-user fairness, caps, timeouts and cancel."""

    def __init__(self, config: EngineConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._resources: dict[str, _Resource] = {}
        self._ids = itertools.count(1)
        self._started = False
        self._stopping = False
        self._metrics: dict[str, KindMetrics] = defaultdict(KindMetrics)
        self._warm: dict[tuple[str, str], asyncio.Future[None]] = {}

    # -- set-up and lifecycle ---------------------------------------------------------------

    def add_resource(self, name: str, workers: int = 1) -> None:
        """Register a model resource. ``workers`` jobs of it may run at once."""
        if name in self._resources:
            raise ValueError(f"resource {name!r} already registered")
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"doppel-{name}")
        self._resources[name] = _Resource(name=name, workers=workers, executor=executor)
        if self._started:
            self._spawn_workers(self._resources[name])

    async def run_on(self, resource: str, fn: Callable[[], T]) -> T:
        """Run a blocking call on a resource's thread outside the queue (model loading)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._resources[resource].executor, fn)

    async def warm(self, resource: str, name: str, load: Callable[[], None]) -> None:
        """Load a model on its resource's thread once (``name`` tells models apart), outside
        any job: a cold model never counts against a job's timeout. Concurrent callers share
        the one load; a failed load is tried again by the next caller."""
        if not self._started or self._stopping:  # stopped before it was wanted: never loaded
            raise SchedulerStopped(f"not loading {name}: the scheduler is stopped")
        key = (resource, name)
        loading = self._warm.get(key)
        if loading is None or (loading.done() and loading.exception() is not None):
            loading = asyncio.ensure_future(self.run_on(resource, load))
            self._warm[key] = loading
        await asyncio.shield(loading)

    async def start(self) -> None:
        self._started = True
        self._stopping = False
        for res in self._resources.values():
            self._spawn_workers(res)

    def _spawn_workers(self, res: _Resource) -> None:
        for i in range(res.workers):
            task = asyncio.create_task(self._worker(res), name=f"doppel-{res.name}-worker-{i}")
            res.tasks.append(task)

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new work, drop queued jobs, let running ones finish within ``grace_s``."""
        if not self._started:
            return
        self._stopping = True
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        for res in self._resources.values():
            for job in list(res.pending):
                self._drop_queued(res, job, SchedulerStopped("scheduler stopped"),
                                  JobState.CANCELLED)
            res.wakeup.set()
        running = [j for r in self._resources.values() for j in r.running]
        if running:
            log.info("waiting up to %.1fs for %d running job(s)", grace, len(running))
            await asyncio.wait([j._future for j in running], timeout=grace)
            for job in running:
                if not job.state.finished:
                    log.info("cancelling job %d (%s) at shutdown", job.id, job.kind)
                    job._at_shutdown = True
                    job._signal_stop()
        loading = {k: f for k, f in self._warm.items() if not f.done()}
        for f in loading.values():  # a model not loaded yet is not wanted now
            f.cancel()
        await asyncio.gather(*loading.values(), return_exceptions=True)
        for key in loading:
            del self._warm[key]
        for res in self._resources.values():
            await asyncio.gather(*res.tasks, return_exceptions=True)
            res.tasks.clear()
            res.executor.shutdown(wait=True)
        self._started = False

    # -- submitting and cancelling ----------------------------------------------------------

    def submit(
        self,
        resource: str,
        fn: JobFn[T],
        *,
        user: str,
        kind: str,
        priority: Priority,
        timeout_s: float | None = None,
        on_position: PositionCallback | None = None,
        held: bool = False,
    ) -> Job[T]:
        """Queue ``fn`` on ``resource`` (``held``: it waits at its first pause point until
        ``Job.release``). Raises QueueFull / UserQueueFull / SchedulerStopped."""
        if not self._started or self._stopping:
            raise SchedulerStopped("scheduler is not running")
        res = self._resources[resource]
        active = sum(1 for r in self._resources.values() for j in (*r.pending, *r.running)
                     if j.user == user)
        if active >= self.config.max_pending_per_user:
            raise UserQueueFull(f"user {user} has {active} active jobs")
        if len(res.pending) >= self.config.queue_size:
            raise QueueFull(f"queue for {resource} is full ({len(res.pending)} jobs)")
        job: Job[T] = Job(
            id=next(self._ids), resource=resource, kind=kind, priority=priority, user=user,
            fn=fn, timeout_s=timeout_s, on_position=on_position, created=self._clock(),
        )
        if held:
            job.hold()
        res.pending.append(job)
        loop = asyncio.get_running_loop()
        job._wait_timer = loop.call_later(self.config.queue_wait_timeout_s, self._expire, res, job)
        log.debug("queued job %d %s/%s for %s", job.id, resource, kind, user)
        self._update_positions(res)
        res.wakeup.set()
        return job

    def cancel(self, job: Job[Any]) -> bool:
        """Cancel one job, queued or running. Returns False if it had already finished."""
        if job.state.finished:
            return False
        res = self._resources[job.resource]
        if job.state is JobState.QUEUED:
            self._drop_queued(res, job, JobCancelled("cancelled"), JobState.CANCELLED)
        else:
            job._signal_stop()
        return True

    def cancel_user(self, user: str) -> int:
        """Cancel every queued or running job of ``user`` (``/cancel``). Returns the count."""
        jobs = [j for r in self._resources.values() for j in (*r.pending, *r.running)
                if j.user == user]
        return sum(self.cancel(j) for j in jobs)

    def stats(self) -> dict[str, dict[str, int]]:
        return {n: {"queued": len(r.pending), "running": len(r.running)}
                for n, r in self._resources.items()}

    def kind_metrics(self) -> dict[str, KindMetrics]:
        """Finished jobs per kind: counts by outcome, and summed wait and run seconds."""
        return dict(self._metrics)

    # -- internals --------------------------------------------------------------------------

    def _drop_queued(self, res: _Resource, job: Job[Any], error: SchedulerError,
                     state: JobState) -> None:
        res.pending.remove(job)
        job._finish(state, error=error, now=self._clock())
        self._update_positions(res)

    def _expire(self, res: _Resource, job: Job[Any]) -> None:
        if job.state is JobState.QUEUED:
            log.warning("job %d waited over %.0fs in the queue", job.id,
                        self.config.queue_wait_timeout_s)
            self._drop_queued(res, job, JobTimeout("waited too long in the queue"),
                              JobState.TIMED_OUT)

    def _update_positions(self, res: _Resource) -> None:
        """Renumber waiting jobs and tell those that really wait (not ones a free worker takes)."""
        order = dispatch_order(res.pending, res.last_served, res.serve_counter)
        free = max(res.workers - len(res.running), 0)
        for pos, job in enumerate(order, start=1):
            if job.position == pos:
                continue
            job.position = pos
            if job.on_position is not None and (pos > free or job._announced):
                job._announced = True
                try:
                    job.on_position(pos)
                except Exception:
                    log.exception("queue-position callback of job %d failed", job.id)

    def _pick(self, res: _Resource) -> Job[Any] | None:
        running_by_user: dict[str, int] = defaultdict(int)
        for j in res.running:
            running_by_user[j.user] += 1
        for job in dispatch_order(res.pending, res.last_served, res.serve_counter):
            if running_by_user[job.user] < self.config.max_running_per_user:
                return job
        return None

    async def _worker(self, res: _Resource) -> None:
        while True:
            job = self._pick(res)
            if job is None:
                if self._stopping:
                    return
                res.wakeup.clear()
                await res.wakeup.wait()
                continue
            res.pending.remove(job)
            res.running.add(job)
            res.serve_counter += 1
            res.last_served[job.user] = res.serve_counter
            if job._wait_timer is not None:
                job._wait_timer.cancel()
            self._update_positions(res)
            try:
                await self._run(res, job)
            finally:
                res.running.discard(job)
                res.wakeup.set()  # a per-user cap may have been freed for another worker

    async def _run(self, res: _Resource, job: Job[Any]) -> None:
        loop = asyncio.get_running_loop()
        job.state = JobState.RUNNING
        job.started = self._clock()
        ctx = JobContext(job, loop)
        fut = loop.run_in_executor(res.executor, job.fn, ctx)
        done, _ = await asyncio.wait([fut], timeout=job.timeout_s)
        if not done:
            job._timed_out = True
            job._signal_stop()
            log.warning("job %d (%s) passed its %.0fs timeout", job.id, job.kind, job.timeout_s)
            # The resource stays busy until the thread really returns.
            await asyncio.wait([fut])
        now = self._clock()
        error = fut.exception()
        metrics = self._metrics[job.kind]
        if job._timed_out:
            partial = fut.result() if error is None else None
            job._finish(JobState.TIMED_OUT, error=JobTimeout("timed out", partial=partial),
                        now=now)
        elif job._cancel_event.is_set():
            job._finish(JobState.CANCELLED, error=JobCancelled(
                "cancelled at shutdown", user_message=CUT_BY_RESTART) if job._at_shutdown
                else JobCancelled("cancelled"), now=now)
        elif error is not None:
            if isinstance(error, InputError):  # refused on purpose: no traceback needed
                log.info("job %d (%s) refused: %s", job.id, job.kind, error)
            elif isinstance(error, DoppelError) and not isinstance(error, SchedulerError):
                log.warning("job %d (%s) failed: %s", job.id, job.kind, error)  # says why
            elif not isinstance(error, SchedulerError):
                log.error("job %d (%s) failed", job.id, job.kind, exc_info=error)
            job._finish(JobState.FAILED, error=error, now=now)
        else:
            job._finish(JobState.DONE, result=fut.result(), now=now)
        metrics.record(job)
