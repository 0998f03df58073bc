"""Per-user rate limits: a burst, then a steady rate, with a clear wait time."""

from __future__ import annotations

import pytest

from engine.engine import Engine, UserRef
from engine.ratelimit import RateLimited, RateLimiter
from engine.stories.options import StoryRequest
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import MakeConfig


def test_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=6, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as err:
        limiter.take("a")
    assert err.value.user_message == "Slow down a little: try again in 10 s."
    limiter.take("b")  # other users are not affected
    now[0] = 10.0  # one request earned back (6 per minute)
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    off = RateLimiter(per_minute=0, burst=1)  # 0 turns it off
    for _ in range(100):
        off.take("x")


async def test_engine_refuses_chat_and_story_beyond_the_limit(make_config: MakeConfig) -> None:
    engine = Engine(make_config(engine={"rate_per_minute": 1, "rate_burst": 3}),
                    llm=FakeLLM(["one", "two", "three",
                                 "Title\nA story about a fox who found a red ball in the snow."]))
    await engine.start()
    try:
        ann, bob = UserRef("telegram", "1"), UserRef("telegram", "2")
        await (await engine.chat(ann, "first")).result()  # 2 of 3 left
        await (await engine.chat(ann, "second")).result()  # 1 left
        with pytest.raises(RateLimited):
            await engine.stories.create(ann, StoryRequest())  # a story costs 2
        await (await engine.chat(ann, "third")).result()  # the last one
        with pytest.raises(RateLimited) as err:
            await engine.chat(ann, "fourth")
        assert "try again in" in err.value.user_message
        assert [m.content for m in await engine.history(ann)] == [
            "first", "one", "second", "two", "third", "three"]  # refusals stored nothing
        record = await (await engine.stories.create(bob, StoryRequest())).result()
        assert record.title == "Title"  # another user is not held back
    finally:
        await engine.stop()
