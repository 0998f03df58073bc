"""Console adapter: the REPL commands in-process (FakeLLM) and the real CLI end to end."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.app import run_app
from bot.console import ConsoleAdapter
from engine.config import Config
from engine.engine import Engine, UserRef
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM
from tests.auxil.servers import wait_until
from tests.conftest import ROOT, settings_of

ME = UserRef("console", "tester", "tester")


async def run_repl(config: Config, llm: FakeLLM, script: str, persona: str | None = None,
                   voice: bool | None = None) -> str:
    out = io.StringIO()
    code = await run_app(
        settings_of(config), llm=llm,
        console=lambda e: ConsoleAdapter(e, user=ME, stdin=io.StringIO(script), stdout=out,
                                         persona=persona, voice=voice),
    )
    assert code == 0
    return out.getvalue()


async def test_repl_chat_history_persona_reset(config: Config) -> None:
    llm = FakeLLM(["Jeff, the quote is late. Phillip", "Once upon a time."])
    out = await run_repl(config, llm, "\n".join([
        "/help", "where is the quote?", "/history", "/persona", "/persona storyteller",
        "a story please", "/reset", "/history", "/persona nobody", "/frobnicate", "/quit",
        "never read",
    ]) + "\n")
    assert "you are talking to Phillip Allen" in out
    assert "What do you need?" in out  # the persona's greeting
    assert "/history [N]" in out
    assert "Phillip Allen: Jeff, the quote is late. Phillip\n" in out
    assert "you: where is the quote?" in out
    assert " * allen " in out and "   storyteller " in out
    assert "You are now talking to Grandma Tilly." in out
    assert "Grandma Tilly: Once upon a time.\n" in out
    assert "Started a new conversation with Grandma Tilly." in out
    assert "No messages in this conversation yet." in out
    assert "There is no persona called 'nobody'. Available: allen, storyteller." in out
    assert "Unknown command /frobnicate. Type /help." in out
    assert llm.prompts[1][-1].content == "a story please"
    assert len(llm.prompts) == 2


async def test_repl_cancel_stops_the_reply_and_keeps_going(config: Config) -> None:
    llm = FakeLLM([FakeLLM.HANG, "second reply"])
    out = await run_repl(config, llm, "hello\n/cancel\nand now?\n")
    assert "Phillip Allen: [stopped]\n" in out
    assert "Phillip Allen: second reply\n" in out  # the line typed during the reply ran after


async def test_repl_reports_refusals_without_dying(config: Config) -> None:
    llm = FakeLLM(["fine"])
    out = await run_repl(config, llm, "x" * 5000 + "\nok\n")
    assert "That message is too long (5000 characters; the limit is 4000)" in out
    assert "Phillip Allen: fine\n" in out


async def test_run_once_prints_only_the_answer(config: Config,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    engine = Engine(config, llm=FakeLLM(["Short answer."]))
    await engine.start()
    try:
        out = io.StringIO()
        code = await ConsoleAdapter(engine, user=ME, persona="storyteller",
                                    stdout=out).run_once("hi")
        assert code == 0
        assert out.getvalue() == "Short answer.\n"
        assert await ConsoleAdapter(engine, user=ME, stdout=out).run_once("   ") == 1
        assert "Say something" in capsys.readouterr().err
    finally:
        await engine.stop()


# -- the real command line, real model, separate process ------------------------------------


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
        '[llm]\nmax_tokens = 32\nn_threads = 2\n'
        # A busy machine may be slow, never wrong: job timeouts only guard against hangs.
        '[engine]\nshutdown_grace_s = 2\nchat_timeout_s = 900\nstory_timeout_s = 900\n'
        '[memory]\nauto_ingest = false\n'
        '[api]\nport = 0\n'
    )
    return path


def doppel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "TELEGRAM_TOKEN")}
    env.update(extra)
    return env


def doppel(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *args]


@pytest.mark.model
def test_cli_message_answers_as_demo_persona_and_stores_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.run(
        doppel("--config", str(cfg), "chat", "--message", "hello", "--persona", "allen"),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    with sqlite3.connect(tmp_path / "data" / "doppel.db") as db:
        rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "hello", "complete")
    assert rows[1][0] == "assistant" and rows[1][2] in ("complete", "truncated")
    # Stored as printed; a reply cut off by max_tokens is stored up to its last sentence.
    assert proc.stdout.strip().startswith(rows[1][1].strip())


@pytest.mark.model
def test_run_without_tokens_opens_console_with_default_persona(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.run(
        doppel("--config", str(cfg), "run"), input="hi there\n/quit\n",
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "you are talking to Phillip Allen" in proc.stdout
    assert "Phillip Allen: " in proc.stdout.split("> ", 1)[1]
    # The terminal shows the conversation only (issue 33): the log is in a file.
    assert " INFO " not in proc.stdout + proc.stderr, proc.stderr
    log = (tmp_path / "data" / "doppel.log").read_text()
    assert "Discord adapter off: DISCORD_TOKEN is not set" in log
    assert "engine stopped" in log


@pytest.mark.model
def test_quitting_the_console_at_once_is_quiet(tmp_path: Path) -> None:
    """Issue 33: /quit before the speech models had warmed printed a traceback."""
    cfg = write_config(tmp_path)
    proc = subprocess.run(doppel("--config", str(cfg), "run"), input="/quit\n",
                          capture_output=True, text=True, timeout=HANG_S, env=doppel_env(),
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "data" / "doppel.log").read_text()
    assert "engine stopped" in log
    for said in (proc.stdout, proc.stderr, log):
        assert "Traceback" not in said and "failed" not in said, said
    assert proc.stderr == ""


@pytest.mark.model
def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.Popen(
        doppel("--config", str(cfg), "run"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=doppel_env(), cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + HANG_S
        seen = ""
        while "> " not in seen and time.monotonic() < deadline:
            seen += proc.stdout.read(1)
        assert "> " in seen, "the console prompt never appeared"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    log = (tmp_path / "data" / "doppel.log").read_text()
    assert "SIGTERM: shutting down" in log
    assert "engine stopped" in log


@pytest.mark.model
def test_run_with_no_token_and_no_input_serves_the_web_app_until_told_to_stop(
        tmp_path: Path) -> None:
    """Issue 34: in a container (compose, ``docker run`` without -i) standard input is
    /dev/null; a console chat there ended at once, and the container restarted forever."""
    cfg = write_config(tmp_path)
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(doppel("--config", str(cfg), "run"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=doppel_env(),
                                cwd=ROOT)
    try:
        def serving() -> re.Match[str] | None:
            return re.search(r"web app and API at (http://\S+)", log.read_text())

        wait_until(lambda: serving() is not None, proc, "doppel run")
        found = serving()
        assert found is not None
        health = httpx.get(f"{found.group(1)}/health", timeout=HANG_S)
        assert health.json()["ok"], health.text
        assert proc.poll() is None  # still up: nobody quit a console
        proc.send_signal(signal.SIGTERM)
        proc.wait(HANG_S)
    finally:
        proc.kill()
    said = log.read_text()
    assert proc.returncode == 0, said
    assert "no input to chat on: serving the web app and the API alone" in said
    assert "console" not in said.lower() and "Traceback" not in said, said


async def test_console_story_flow_suggest_write_favourite_find_clear(config: Config) -> None:
    llm = FakeLLM([
        "1. A turtle who learns to swim\n2. A bird who builds a boat\n3. A cat in the rain",
        "Tiny Turtle\nTilly the turtle was afraid of water. One day she swam! She was proud.",
    ])
    out = await run_repl(config, llm, "\n".join([
        "/suggest genre=animals age=3-5", "/story #1 age=3-5 length=short", "/fav 1",
        "/stories", "/stories turtle", "/stories zebra", "/open 1",
        "/genre add space_pirates kind pirates", "/genres",
        '/prompt save bunny genre=bedtime chars="Bun, a bunny" counting stars', "/prompts",
        "/clear-stories", "/clear-stories yes", "/stories", "/favourites",
        "/story genre=horror", "/story a pirate with a gun", "/fav 99", "/narrate 1", "/quit",
    ]) + "\n")
    assert "Ideas for animals (3-5):\n  1. A turtle who learns to swim\n" in out
    assert "Tilly the turtle was afraid of water." in out
    assert '-- saved as #1 "Tiny Turtle". /fav 1 to keep it' in out
    assert "[PROMPT] A turtle who learns to swim" in llm.prompts[1][-1].content
    assert 'Added "Tiny Turtle" to your favourites.' in out
    assert "Today:\n  #1 Tiny Turtle (animals) *\n" in out
    assert "ages 3-5" in out
    assert "No stories found." in out
    assert "Added the genre 'space pirates'." in out and "Yours: space pirates" in out
    assert "@bunny: bedtime, ages 6-8, en, short: counting stars" in out
    assert "This clears 1 stories from your history (favourites are kept)." in out
    assert "Cleared 1 stories from your history; favourites are kept." in out
    assert "No stories yet. Try /story." in out
    assert "Favourites:\n  #1 Tiny Turtle (animals) *" in out
    assert "I don't know the genre 'horror'." in out
    assert "That isn't something I can put in a children's story." in out
    assert "You have no story #99." in out
    [narrated] = config.storage.data_dir.glob("users/*/voice/story-1.ogg")
    assert f"Story #1 read aloud: {narrated}" in out
    # Its cover (the neutral card: no image model here) is saved, after the story and on /open.
    [cover] = config.storage.data_dir.glob("users/*/pictures/story-1-0.png")
    assert out.count(f"  picture: {cover}\n") == 2


@pytest.mark.model
def test_cli_story_create_then_history(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.run(
        doppel("--config", str(cfg), "story", "create", "genre=animals", "age=3-5",
               "sampling=greedy", "a turtle who learns to swim"),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert '-- saved as #1 "' in proc.stdout
    proc = subprocess.run(
        doppel("--config", str(cfg), "story", "history", "turtle"),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Today:\n  #1 ") and "(animals)" in proc.stdout
    proc = subprocess.run(
        doppel("--config", str(cfg), "story", "create", "genre=horror"),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 1 and "I don't know the genre 'horror'" in proc.stderr


async def test_console_voice_mode_writes_voice_notes(config: Config) -> None:
    llm = FakeLLM(["Jeff, the rent roll came in today. I will drive by on Friday."])
    out = await run_repl(config, llm, "/voice both\nwhere is the rent roll?\n/voice\n")
    assert "Reply mode: both." in out
    line = next(ln for ln in out.splitlines() if ln.startswith("(voice note: "))
    path = Path(line.removeprefix("(voice note: ").split(",")[0])
    assert path.parent.parent.parent == config.storage.data_dir / "users"
    assert (await asyncio.to_thread(path.read_bytes))[:4] == b"OggS"
    assert "AI-generated voice" in line


async def test_forget_removes_the_voice_notes_narrations_pictures_and_exports_made_for_you(
        config: Config) -> None:
    llm = FakeLLM(["Jeff, the rent roll came in today.", "Tiny Turtle\nTim swam. The end."])
    script = ("/voice both\nwhere is the rent roll?\n/story a turtle\n/narrate 1\n/export\n")
    out = await run_repl(config, llm, script)
    kinds = (".ogg", ".zip", ".png")
    made = [p for p in config.storage.data_dir.rglob("*") if p.suffix in kinds]
    assert {p.suffix for p in made} == set(kinds) and "read aloud" in out
    out = await run_repl(config, FakeLLM(), "/forget yes\n")
    assert "I have forgotten everything about you." in out
    assert [p for p in config.storage.data_dir.rglob("*") if p.suffix in kinds] == []


@pytest.mark.model
def test_cli_voice_in_is_transcribed_and_answered(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.run(
        doppel("--config", str(cfg), "chat", "--voice", "--persona", "storyteller", "-m",
               "Please tell me about the little red hen."),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    note = Path(proc.stdout.split("(voice note: ")[1].split(",")[0])
    # The persona's own voice note, fed back in as if the user had spoken it.
    proc = subprocess.run(
        doppel("--config", str(cfg), "chat", "--persona", "storyteller", "--voice-in",
               str(note)),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("(you said: ")
    assert "(voice note: " in proc.stdout  # spoken to, it answers with voice too
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"not audio at all")
    proc = subprocess.run(
        doppel("--config", str(cfg), "chat", "--voice-in", str(bad)),
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )
    assert proc.returncode == 1 and "couldn't read that audio" in proc.stderr
