"""👍 / 👎: one rating per user and reply or story (a changed mind replaces it), kept with
the request and the output, only on one's own; approval per persona and model; preference
pairs from a request answered twice ("🔁 Again") and rated both ways, exported by
``doppel train prepare --feedback``. The FakeLLM writes the replies."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from bot.ratings import stats_text
from engine.engine import Engine, UserRef
from engine.errors import InputError, NotAllowed
from engine.stories.options import StoryRequest
from tests.auxil.fake_llm import FakeLLM
from tests.bot.test_console import doppel, doppel_env
from tests.conftest import ROOT, MakeConfig

ANN = UserRef("telegram", "71", "Ann")
BOB = UserRef("telegram", "72", "Bob")


async def reply_id(engine: Engine, user: UserRef, text: str) -> int:
    result = await (await engine.chat(user, text)).result()
    assert result.message_id is not None
    return result.message_id


async def test_ratings_are_kept_counted_and_paired(make_config: MakeConfig,
                                                   fake_llm: FakeLLM) -> None:
    engine = Engine(make_config(engine={"admins": ["telegram:71"]}), llm=fake_llm)
    await engine.start()
    try:
        fake_llm.replies += ["A dull answer.", "A warm and helpful answer."]
        first = await reply_id(engine, ANN, "How was the week?")
        again = await reply_id(engine, ANN, "How was the week?")  # as "🔁 Again" asks
        await engine.feedback.rate(ANN, f"reply:{first}", True)
        await engine.feedback.rate(ANN, f"reply:{first}", False)  # changed their mind
        await engine.feedback.rate(ANN, f"reply:{again}", True)
        with pytest.raises(InputError, match="no reply"):
            await engine.feedback.rate(BOB, f"reply:{again}", False)  # not Bob's
        with pytest.raises(InputError):
            await engine.feedback.rate(ANN, "reply:x", True)
        fake_llm.replies.append("The Kite\nKit the kite flew over the hills and far away, "
                                "and the children cheered from the meadow below.")
        story = await (await engine.stories.create(ANN, StoryRequest())).result()
        await engine.feedback.rate(ANN, f"story:{story.id}", True)

        stats = {(a.kind, a.persona): (a.good, a.bad) for a in await engine.feedback.stats()}
        assert stats == {("reply", "allen"): (1, 1), ("story", ""): (1, 0)}
        assert await engine.feedback.pairs() == [{
            "persona": "allen", "prompt": "How was the week?",
            "chosen": "A warm and helpful answer.", "rejected": "A dull answer."}]
        said = await stats_text(engine, ANN)
        assert "reply · allen · " in said and "50% liked (1 👍, 1 👎)" in said
        with pytest.raises(NotAllowed):
            await stats_text(engine, BOB)
    finally:
        await engine.stop()

    out = Path(engine.config.storage.data_dir).parent / "prefs"
    cfg = Path(engine.config.storage.data_dir).parent / "config.toml"
    cfg.write_text(f'[storage]\ndata_dir = "{engine.config.storage.data_dir}"\n'
                   f'[personas]\ndir = "{ROOT / "persona_data"}"\n')
    done = await asyncio.to_thread(
        subprocess.run, doppel("--config", str(cfg), "train", "prepare", "--feedback",
                               "reply", "-o", str(out)),
        cwd=ROOT, env=doppel_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1 preference pairs" in done.stdout
    [pair] = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert pair["chosen"] == "A warm and helpful answer."


async def test_ratings_go_with_the_user(engine: Engine, fake_llm: FakeLLM) -> None:
    rid = await reply_id(engine, ANN, "Hello there")
    await engine.feedback.rate(ANN, f"reply:{rid}", False)
    data = json.loads(zipfile.ZipFile(io.BytesIO(await engine.export(ANN)))
                      .read("doppel-export.json"))
    assert [(r["target"], r["good"]) for r in data["ratings"]] == [(f"reply:{rid}", False)]
    await engine.forget(ANN)
    assert await engine.feedback.stats() == []
