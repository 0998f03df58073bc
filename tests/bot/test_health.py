"""`doppel health`: alive while `doppel run` runs, unhealthy when its heartbeat is stale."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time

from bot.app import HEARTBEAT_FILE, health, run_app
from bot.console import ConsoleAdapter
from engine.config import Config
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import settings_of


async def test_heartbeat_while_running_and_stale_after(config: Config) -> None:
    assert health(config) == (False, f"no heartbeat at {config.storage.data_dir / HEARTBEAT_FILE}"
                                     ": doppel run is not running (yet)")
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r")
    app = asyncio.create_task(run_app(
        settings_of(config), llm=FakeLLM(),
        console=lambda e: ConsoleAdapter(e, stdin=stdin, stdout=io.StringIO())))
    deadline = time.monotonic() + HANG_S
    while not health(config)[0]:
        assert time.monotonic() < deadline and not app.done()
        await asyncio.sleep(0.1)
    ok, detail = health(config)
    assert detail.startswith(f"alive: pid {os.getpid()}, adapters console, 0 job(s) queued")
    os.write(write_fd, b"/quit\n")
    os.close(write_fd)
    assert await asyncio.wait_for(app, 60) == 0
    path = config.storage.data_dir / HEARTBEAT_FILE
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "time": time.time() - 120}))
    ok, detail = health(config)
    assert not ok and detail == "last heartbeat 120 s ago: the event loop is stuck or gone"
