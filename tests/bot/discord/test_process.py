"""The real ``doppel run`` process connected to Discord stand-ins on loopback (gateway and
REST, tests/auxil/discord_gateway.py), with the fake OpenAI-compatible model server at the
model boundary: several people at once, /cancel, hostile model output and SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from engine.scheduler import CUT_BY_RESTART
from tests.auxil.discord_api import Call, command
from tests.auxil.discord_gateway import TOKEN, DiscordStandIn
from tests.auxil.eventually import HANG_S
from tests.auxil.llm_api import HOLD_FIRST, FakeLLMServer
from tests.bot.test_console import doppel, doppel_env
from tests.conftest import ROOT

ANN_DM = command("cancel")
ANN, ANN_CHANNEL = int(ANN_DM["user"]["id"]), int(ANN_DM["channel_id"])
BOB, CAT, DAN = 7100, 7200, 7300
MARKUP = re.compile(r"<<|>>|\[(GENRE|STORY|AGE|LANGUAGE|LENGTH|PROMPT|CHARACTERS)\]|<\|")


@pytest.fixture
def servers() -> Iterator[tuple[DiscordStandIn, FakeLLMServer]]:
    with DiscordStandIn() as dc, FakeLLMServer() as llm:
        yield dc, llm


def start(tmp: Path, dc: DiscordStandIn, llm: FakeLLMServer) -> subprocess.Popen[bytes]:
    cfg = tmp / "config.toml"
    cfg.write_text(
        f'[storage]\ndata_dir = "{tmp / "data"}"\n'
        f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
        f'[llm]\nbackend = "openai"\napi_base = "{llm.base}"\nmax_tokens = 40\n'
        '[engine]\nshutdown_grace_s = 2\n'
        '[memory]\nauto_ingest = false\n'
        '[api]\nport = 0\n'
        f'[discord]\napi_base = "{dc.api_base}"\ngateway_url = "{dc.gateway_url}"\n'
        'edit_interval_s = 0.3\n')
    return subprocess.Popen(doppel("--config", str(cfg), "run"), cwd=ROOT,
                            env=doppel_env(DISCORD_TOKEN=TOKEN),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def place(dc: DiscordStandIn, channel: int) -> int | None:
    told = [t for t in dc.texts(channel) if "in line" in t]
    return int(told[0].split("#")[1].split()[0]) if told else None


def finishes(calls: list[Call], channel: int) -> list[int]:
    """Where in ``calls`` a reply in ``channel`` was finished: sent or edited with buttons."""
    prefix = f"/channels/{channel}/messages"
    return [i for i, c in enumerate(calls) if c.method in ("POST", "PATCH")
            and c.path.startswith(prefix) and (c.json or {}).get("components")]


def finished(dc: DiscordStandIn, channel: int) -> list[str]:
    """Texts of finished replies in a channel: the messages that carry buttons."""
    calls = dc.calls()
    return [str(calls[i].json.get("content")) for i in finishes(calls, channel)]


def ann_waits(dc: DiscordStandIn, llm: FakeLLMServer, text: str) -> None:
    """Once the bot is connected, Ann asks something the model holds after one sentence;
    returns once that sentence is shown while the model pauses (issue 33: no streaming
    edit reached the channel), up to its last clause end, as its last word may run on."""
    dc.wait_for(lambda: dc.identified.is_set() and dc.rest.named(
        "PUT", "/applications/*/commands"))
    dc.dm(ANN, text, channel=ANN_CHANNEL)
    dc.wait_for(lambda: llm.holding)
    head = HOLD_FIRST.rsplit(" ", 1)[0]
    dc.wait_for(lambda: [t for t in dc.texts(ANN_CHANNEL) if t.endswith(head)])


def test_people_at_once_cancel_and_clean_replies_then_sigterm(
        tmp_path: Path, servers: tuple[DiscordStandIn, FakeLLMServer]) -> None:
    dc, llm = servers
    proc = start(tmp_path, dc, llm)
    try:
        ann_waits(dc, llm, "Please hold on and think about the bridge")
        dc.dm(BOB, "Tell me about your week")
        dc.dm(CAT, "Say something hostile")
        places = {dc.wait_for(partial(place, dc, BOB + 1)),
                  dc.wait_for(partial(place, dc, CAT + 1))}
        assert places == {1, 2}
        dc.dm(DAN, "Please mention everyone you know")
        # /cancel stops Ann's reply, which shows that it stopped before /cancel says so
        # (issue 33); Bob and Cat are answered.
        dc.dispatch("INTERACTION_CREATE", ANN_DM)
        said = dc.wait_for(lambda: [i for i, c in enumerate(dc.calls())
                                    if "Stopped 1 request" in json.dumps(c.json)])[0]
        dc.wait_for(lambda: llm.abandoned)  # the server sees it at its next keep-alive
        calls = dc.calls()
        ann = finishes(calls, ANN_CHANNEL)
        assert ann and ann[-1] < said, [(c.method, c.path) for c in calls]
        assert calls[ann[-1]].json["content"].endswith("Cancelled."), calls[ann[-1]].json
        assert HOLD_FIRST in calls[ann[-1]].json["content"]
        bob = dc.wait_for(partial(finished, dc, BOB + 1))
        cat = dc.wait_for(partial(finished, dc, CAT + 1))
        assert "calm answer from the fake model" in bob[-1]
        assert "The rent was paid on time." in cat[-1]
        for channel in (ANN_CHANNEL, BOB + 1, CAT + 1):
            for text in dc.texts(channel):
                assert not MARKUP.search(text), text
        # Issue 33: nothing the persona sends may ping a server, a role or a user.
        assert "@everyone" in dc.wait_for(partial(finished, dc, DAN + 1))[-1]
        bodies = [(c.path, c.json["data"] if isinstance(c.json.get("data"), dict)
                   else c.json) for c in dc.calls()
                  if c.method in ("POST", "PATCH") and isinstance(c.json, dict)]
        sent = [(path, body) for path, body in bodies if "content" in body]
        assert len(sent) > 6 and any("/webhooks/" in path for path, _ in sent)
        for path, body in sent:
            assert body.get("allowed_mentions", {}).get("parse") == [], (path, body)
            assert not body["allowed_mentions"].get("roles")
            assert not body["allowed_mentions"].get("users")
    finally:
        llm.release()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_S)
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "was never retrieved" not in log, log


def test_sigterm_mid_reply_sends_its_last_words_before_the_connection_closes(
        tmp_path: Path, servers: tuple[DiscordStandIn, FakeLLMServer]) -> None:
    dc, llm = servers
    proc = start(tmp_path, dc, llm)
    try:
        ann_waits(dc, llm, "Please hold on and think about the river")
    finally:
        proc.send_signal(signal.SIGTERM)  # the held reply never ends by itself
        _, err = proc.communicate(timeout=HANG_S)
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "edit lost" not in log, log
    # The reply keeps what was written, says why it stopped and carries its buttons.
    last = finished(dc, ANN_CHANNEL)
    assert last and HOLD_FIRST in last[-1] and last[-1].endswith(CUT_BY_RESTART), (last, log)
