"""What runs on a web session (a live call) ends with it: each watcher on its own."""

from __future__ import annotations

from engine.engine import Engine, UserRef


async def signed_in(engine: Engine, user: UserRef) -> str:
    engine.web.serving_at("http://127.0.0.1:8000")
    signed = await engine.web.redeem((await engine.web.link(user)).rsplit("/", 1)[-1])
    assert signed is not None
    return signed.session


async def test_two_calls_on_one_session_end_apart_and_both_with_it(engine: Engine) -> None:
    """A second window's call on the same session outlives the first one's end, and still
    ends at sign-out; forgetting the user ends every call on any of their sessions."""
    ann, bob = UserRef("telegram", "1", "Ann"), UserRef("telegram", "2", "Bob")
    session = await signed_in(engine, ann)
    first, second = engine.web.watch(session, ann), engine.web.watch(session, ann)
    engine.web.unwatch(first)  # the first window's call ended
    await engine.web.sign_out(session)
    assert second.is_set() and not first.is_set()

    on_phone, on_laptop = await signed_in(engine, ann), await signed_in(engine, ann)
    theirs = [engine.web.watch(on_phone, ann), engine.web.watch(on_laptop, ann)]
    other = engine.web.watch(await signed_in(engine, bob), bob)
    await engine.forget(ann)
    assert all(e.is_set() for e in theirs) and not other.is_set()
