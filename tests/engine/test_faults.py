"""Faults: a model that will not load, a voice that raises, a disk that is full. The user
gets a short answer; the process and everyone else's requests carry on."""

from __future__ import annotations

import asyncio
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import run_app
from bot.console import ConsoleAdapter
from engine.config import Config
from engine.engine import Engine, UserRef
from engine.errors import ModelError
from engine.voice.speaker import Speaker
from engine.voice.tts import PCM, PiperTTS
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM, introduced
from tests.bot.test_console import doppel, doppel_env, write_config
from tests.conftest import ROOT, settings_of


class FailingTTS(PiperTTS):
    """A fake at the TTS boundary: the real Piper voice's sample rate, but every synthesis
    raises, as a broken voice model or an out-of-memory GPU would."""

    def synthesize(self, text: str, should_stop: Callable[[], bool] = lambda: False,
                   speaker: Speaker | None = None) -> PCM:
        raise RuntimeError("CUDA out of memory (simulated)")


async def test_a_failing_voice_costs_the_voice_note_not_the_reply(
        engine: Engine, fake_llm: FakeLLM) -> None:
    engine.voice.tts = FailingTTS()
    ann, bob = UserRef("telegram", "1"), UserRef("telegram", "2")
    await introduced(engine, ann, bob)
    fake_llm.replies.extend(["Here is the report, Jeff. It looks fine to me.", "Hello Bob."])
    reply = await engine.chat(ann, "How is the report?")
    with pytest.raises(ModelError) as err:
        await engine.voice.speak_stream(reply, user=ann.key, persona=reply.persona)
    assert err.value.user_message == ("I couldn't make a voice note this time; the reply "
                                      "is in text.")
    assert (await reply.result()).text == "Here is the report, Jeff. It looks fine to me."
    other = await engine.chat(bob, "hi")  # the TTS worker and the engine carry on
    assert (await other.result()).status == "complete"


def test_a_model_that_will_not_load_stops_with_one_clear_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    cfg.write_text(cfg.read_text().replace("[llm]\n", f'[llm]\nmodel_path = "{broken}"\n'))
    proc = subprocess.run(doppel("--config", str(cfg), "chat", "-m", "hi"),
                          capture_output=True, text=True, timeout=HANG_S, env=doppel_env(),
                          cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"doppel: could not load {broken}")
    assert "Traceback" not in proc.stderr


async def test_a_full_disk_loses_the_voice_note_not_the_conversation(
        config: Config, tmp_path: Path) -> None:
    out = io.StringIO()
    llm = FakeLLM(["The rent roll came in on Friday.", "Still here."])
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the voice folder should be")

    def console(e: Engine) -> ConsoleAdapter:
        adapter = ConsoleAdapter(e, stdin=io.StringIO("hello\nare you there?\n/quit\n"),
                                 stdout=out, voice=True)
        adapter.voice_dir = blocked / "voice"
        return adapter

    assert await asyncio.wait_for(run_app(settings_of(config), llm=llm, console=console), 120) == 0
    text = out.getvalue()
    assert "(could not save the voice note: Not a directory)" in text
    assert "Still here." in text  # the next message was answered
