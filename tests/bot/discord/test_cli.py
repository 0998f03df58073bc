"""`doppel run` with DISCORD_TOKEN set: a separate process, the real model, FakeDiscord."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.auxil.discord_api import FakeDiscord
from tests.bot.test_console import doppel_env, write_config
from tests.conftest import ROOT


@pytest.mark.model
async def test_run_with_token_logs_in_registers_commands_and_never_logs_the_token(
        tmp_path: Path, fake: FakeDiscord) -> None:
    cfg = write_config(tmp_path)
    with cfg.open("a") as f:
        f.write(f'[discord]\napi_base = "{fake.url}/api/v10"\n')
    secret = "MTA0.fake-discord-token-value"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--config", str(cfg), "run",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=doppel_env(DISCORD_TOKEN=secret), cwd=ROOT)
    assert proc.stderr is not None
    seen = ""
    try:
        async with asyncio.timeout(90):
            while "Discord: logged in as Doppel" not in seen:
                line = await proc.stderr.readline()
                assert line, f"doppel run ended early:\n{seen}"
                seen += line.decode()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    logs = seen + err.decode() + out.decode()
    assert proc.returncode == 0, logs
    assert "discord adapter started" in logs and "engine stopped" in logs
    assert fake.calls[0].authorization == f"Bot {secret}"
    assert fake.named("PUT", "/applications/*/commands")
    assert secret not in logs
