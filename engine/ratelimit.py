"""Per-user token buckets: a steady rate with a burst, and a clear "try again in N s"."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from engine.errors import InputError


class RateLimited(InputError):
    def __init__(self, retry_after_s: float) -> None:
        wait = max(1, math.ceil(retry_after_s))
        super().__init__(f"rate limited for {wait}s",
                         user_message=f"Slow down a little: try again in {wait} s.")
        self.retry_after_s = retry_after_s


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """user key -> (tokens, time of last update)"""

    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` from the user's bucket or raise :class:`RateLimited`."""
        if self.rate <= 0:
            return
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            raise RateLimited((cost - tokens) / self.rate)
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > 100_000:  # forget full, idle buckets
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst}

    def refund(self, key: str, cost: float = 1.0) -> None:
        """Give back ``cost`` for a request that was undone (never counted as asked)."""
        if key in self._buckets:
            tokens, last = self._buckets[key]
            self._buckets[key] = (min(float(self.burst), tokens + cost), last)
