"""The real ``doppel run`` process, polling a Bot API stand-in on loopback, with the fake
OpenAI-compatible model server (tests/auxil/llm_api.py) at the model boundary.

Several people at once, /cancel, a flood, hostile model output, a reply cut off by
``max_tokens``, SIGTERM with a backlog, kill -9, and restarts: what a person meets.
Nothing here waits for a wall-clock bound: each step waits for the call the bot makes.
"""

from __future__ import annotations

import io
import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from bot.turn import MIN_FIRST_CHARS, TRUNCATED_NOTE
from tests.auxil.bot_api import TOKEN, BotApi, Call
from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import FakeLLMServer
from tests.bot.test_console import doppel, doppel_env
from tests.conftest import ROOT

ANN, BOB, CAT, DAN, EVE = 7001, 7002, 7003, 7004, 7005
MARKUP = re.compile(r"<<|>>|\[(GENRE|STORY|AGE|LANGUAGE|LENGTH|PROMPT|CHARACTERS)\]|<\|")


def write_config(tmp: Path, api: BotApi, llm: FakeLLMServer, extra: str = "") -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{tmp / "data"}"\n'
        f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
        f'[llm]\nbackend = "openai"\napi_base = "{llm.base}"\nmax_tokens = 40\n'
        '[engine]\nshutdown_grace_s = 2\nrate_per_minute = 6\nrate_burst = 3\n'
        'max_pending_per_user = 4\n'
        '[memory]\nauto_ingest = false\n'
        '[api]\nport = 0\n'
        f'[telegram]\napi_base = "{api.base}"\nedit_interval_s = 0.3\n' + extra
    )
    return path


@pytest.fixture
def servers() -> Iterator[tuple[BotApi, FakeLLMServer]]:
    with BotApi() as api, FakeLLMServer() as llm:
        yield api, llm


def start(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(doppel("--config", str(cfg), "run"), cwd=ROOT,
                            env=doppel_env(TELEGRAM_TOKEN=TOKEN),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def polling(api: BotApi, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the bot registered its commands (it polls right after)."""
    def up() -> bool:
        assert proc.poll() is None, (proc.stderr.read() if proc.stderr else b"").decode()
        return bool(api.named("setMyCommands"))
    api.wait_for(up)


def holding_ann(cfg: Path, api: BotApi, llm: FakeLLMServer,
                text: str) -> subprocess.Popen[bytes]:
    """A started bot whose model is busy writing Ann's reply (until ``llm.release()``)."""
    proc = start(cfg)
    polling(api, proc)
    api.say(ANN, text)
    api.wait_for(lambda: llm.holding)
    return proc


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG_S)
    return err.decode(errors="replace")


def replies(api: BotApi, chat: int) -> list[Call]:
    """What the bot said in a chat, without its place-in-line notices."""
    return [c for c in api.named("sendMessage", chat) if "in line" not in c.text]


def place(api: BotApi, chat: int) -> int | None:
    """The place in line the bot told ``chat``, if it did."""
    told = [c.text for c in api.named("sendMessage", chat) if "in line" in c.text]
    return int(told[0].split("#")[1].split()[0]) if told else None


def told_lost(api: BotApi, chat: int, said: str) -> bool:
    return any("I restarted before I could answer" in c.text and said in c.text
               for c in api.named("sendMessage", chat))


def accounted(api: BotApi, chat: int, n: int) -> bool:
    """``n`` messages of ``chat`` were answered or their loss told, none twice."""
    told = [c for c in api.named("sendMessage", chat) if "I restarted before" in c.text]
    done = len(told) + len(finished(api, chat))
    assert done <= n, (chat, api.texts(chat))
    return done == n


def answered(api: BotApi, chat: int, n: int) -> bool:
    return len(finished(api, chat)) >= n


def finished(api: BotApi, chat: int) -> list[Call]:
    """Finished replies in a chat: the messages that carry the reply's buttons."""
    return [c for c in api.named("sendMessage", chat) + api.named("editMessageText", chat)
            if "reply_markup" in c.params]


def inbox(tmp: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp / "data" / "doppel.db") as db:
        return db.execute("SELECT update_id, status FROM received_updates").fetchall()


def test_people_at_once_cancel_flood_and_clean_replies(
        tmp_path: Path, servers: tuple[BotApi, FakeLLMServer]) -> None:
    api, llm = servers
    proc = holding_ann(write_config(tmp_path, api, llm), api, llm,
                       "Please hold on and think about the bridge")
    try:
        api.say(BOB, "Tell me about your week")
        api.say(CAT, "Say something hostile")
        # Bob and Cat wait behind Ann, and see it: their places in line (they came in one
        # batch, so either may be first).
        places = {api.wait_for(partial(place, api, chat)) for chat in (BOB, CAT)}
        assert places == {1, 2}
        assert not replies(api, BOB)
        # /cancel is not stuck behind Ann's reply: it stops it, and the others go on.
        api.say(ANN, "/cancel")
        api.wait_for(lambda: [c for c in replies(api, ANN) if c.text.startswith("Stopped 1")])
        api.wait_for(lambda: llm.abandoned)
        for chat in (BOB, CAT):
            api.wait_for(partial(finished, api, chat))
        assert "calm answer from the fake model" in api.texts(BOB)[-1]
        assert "The rent was paid on time." in api.texts(CAT)[-1]
        # The notices are gone once the replies ran.
        assert api.named("deleteMessage", BOB) and api.named("deleteMessage", CAT)

        # A flood from one person meets the rate limit at once, not after whole replies.
        for i in range(8):
            api.say(DAN, f"Message {i} of a flood")
        api.wait_for(lambda: [c for c in replies(api, DAN) if "Slow down" in c.text])

        # A reply cut off by max_tokens ends at a sentence, says so, offers to go on.
        api.say(EVE, "Tell me a long tale")
        final = api.wait_for(lambda: finished(api, EVE))[-1]
        body = final.text.removesuffix(TRUNCATED_NOTE).rstrip()
        assert final.text.endswith(TRUNCATED_NOTE) and body.endswith("on and on.")
        assert "continue" in json.dumps(final.params["reply_markup"])

        # Nothing a person read carries prompt markup; no first message is a fragment.
        for chat in (ANN, BOB, CAT, DAN, EVE):
            for text in api.texts(chat):
                assert not MARKUP.search(text), text
            streamed = [c.text for c in replies(api, chat)
                        if not c.text.startswith(("Stopped", "Slow down", "You already"))]
            assert all(len(t) >= MIN_FIRST_CHARS for t in streamed[:1]), streamed
        api.wait_for(lambda: not inbox(tmp_path))  # every update handled, then dropped
    finally:
        llm.release()
        err = stop(proc)
    assert proc.returncode == 0, err
    assert "was never retrieved" not in err and "Traceback" not in err, err


def test_sigterm_with_a_backlog_then_restart_accounts_for_every_update(
        tmp_path: Path, servers: tuple[BotApi, FakeLLMServer]) -> None:
    api, llm = servers
    cfg = write_config(tmp_path, api, llm)
    proc = holding_ann(cfg, api, llm, "Please hold this thought")
    # Ann's next message waits in the engine's queue behind her held reply (she is told her
    # place); the stop drops that queue.
    api.say(ANN, "Queued behind the held one")
    api.wait_for(partial(place, api, ANN))
    sent = {ANN: 2}
    for chat, n in ((ANN, 1), (BOB, 2), (CAT, 1)):  # Ann's third: the rate limit's burst
        for i in range(n):
            api.say(chat, f"Backlog message {i}")
        sent[chat] = sent.get(chat, 0) + n
    api.wait_for(lambda: len(api.delivered) == 6)  # the bot fetched (and will confirm) all
    err = stop(proc)  # the held reply never ends by itself: exiting means the grace held
    assert proc.returncode == 0, err
    assert llm.abandoned == 1  # Ann's held reply was cancelled, its text kept
    assert not [t for t in api.texts(ANN) if "shutting down" in t]
    # Each update was answered before the exit, or waits in the inbox, not started (the
    # queued one: put back), for the next start, or was never confirmed to Telegram (the
    # stop came before the bot stored it), so Telegram sends it again.
    left = inbox(tmp_path)
    assert "500001" in {u for u, _ in left}, left
    assert all(status == "received" for _, status in left), left
    later = {int(u) for u, _ in left} | set(api.unconfirmed())
    for chat, n in sent.items():
        waiting = [u for u in later if api.delivered[u]["message"]["chat"]["id"] == chat]
        assert len(finished(api, chat)) + len(waiting) == n, (chat, left, api.unconfirmed())

    llm.release()  # the model is healthy again
    again = start(cfg)
    try:
        polling(api, again)
        for chat, n in sent.items():  # every message got exactly one answer
            api.wait_for(partial(answered, api, chat, n))
        api.wait_for(lambda: not inbox(tmp_path))
        assert {chat: len(finished(api, chat)) for chat in sent} == sent
    finally:
        err = stop(again)
    assert again.returncode == 0, err
    with sqlite3.connect(tmp_path / "data" / "doppel.db") as db:  # stored once, not twice
        asked = db.execute("SELECT content FROM messages WHERE role = 'user'").fetchall()
    assert sorted(asked).count(("Queued behind the held one",)) == 1, asked


def test_kill_9_loses_no_confirmed_update(
        tmp_path: Path, servers: tuple[BotApi, FakeLLMServer]) -> None:
    api, llm = servers
    cfg = write_config(tmp_path, api, llm)
    proc = holding_ann(cfg, api, llm, "Please hold this one")
    api.say(BOB, "Are you there, Bob asks")
    api.say(ANN, "And a second thing")
    api.wait_for(lambda: len(api.delivered) == 3)
    api.wait_for(lambda: len(inbox(tmp_path)) == 3)
    # Confirmed to Telegram (a later getUpdates went out) yet not answered: on disk.
    api.wait_for(lambda: api.confirmed > max(api.delivered))
    proc.send_signal(signal.SIGKILL)
    proc.wait(HANG_S)
    assert len(inbox(tmp_path)) == 3

    llm.release()
    again = start(cfg)
    try:
        polling(api, again)
        # Ann's first reply had begun when the process died: she is told it went
        # unanswered. The others are answered now (never started) or their senders told
        # (started: queued in the engine), each exactly once.
        api.wait_for(partial(told_lost, api, ANN, "Please hold this one"))
        api.wait_for(lambda: not inbox(tmp_path))
        for chat, n in ((ANN, 2), (BOB, 1)):
            api.wait_for(partial(accounted, api, chat, n))
        assert not api.unconfirmed()
        # The bot works on: a new message is answered.
        api.say(BOB, "Hello again")
        api.wait_for(lambda: finished(api, BOB))
    finally:
        err = stop(again)
    assert again.returncode == 0, err


def test_a_story_comes_with_its_pictures_as_an_album(
        tmp_path: Path, servers: tuple[BotApi, FakeLLMServer], tiny_diffusion: Path) -> None:
    """The bot drawing with a (tiny, random) diffusers pipeline: the story's text, then a
    media group of its cover and chapter pictures."""
    api, llm = servers
    cfg = write_config(tmp_path, api, llm, f'[images]\nmodel_dir = "{tiny_diffusion}"\n'
                                           'size = 64\nsteps = 1\nchapters = 2\n')
    proc = start(cfg)
    try:
        polling(api, proc)
        api.say(ANN, "/story genre=animals chars=Kit a kite who wants to fly")
        [album] = api.wait_for(lambda: api.named("sendMediaGroup", ANN))
        [story] = finished(api, ANN)
        assert story.text.startswith("The Brave Kite\n\nKit the kite lived in a cupboard")
        assert story.at < album.at  # the text first; the pictures when they are drawn
        media = json.loads(album.params["media"])
        captions = [m.get("caption", "") for m in media]
        assert captions[0] == "The Brave Kite" and len(captions) == 3
        assert captions[1].startswith("Kit the kite") and captions[2].startswith("One windy")
        for m in media:
            picture = album.params[m["media"].removeprefix("attach://")]
            assert Image.open(io.BytesIO(picture)).size == (64, 64)
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
