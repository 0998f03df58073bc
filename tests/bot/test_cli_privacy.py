"""`doppel export USER -o FILE` and `doppel forget USER --yes` for operators."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import pytest

from bot.cli import main
from engine.config import load_config
from engine.engine import Engine, UserRef
from tests.auxil.fake_llm import FakeLLM
from tests.bot.test_console import write_config


def test_operator_finds_exports_then_forgets_a_user(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)

    async def chat() -> None:
        engine = Engine(load_config(cfg), llm=FakeLLM(["Got it."]))
        await engine.start()
        for user in (UserRef("telegram", "42", "Ann Lee"), UserRef("discord", "42", "Bo")):
            await (await engine.chat(user, "delete me later zq")).result()
        await engine.stop()

    def run(*args: str) -> int:
        return main(["--config", str(cfg), *args])

    asyncio.run(chat())
    assert run("users") == 0
    listed = capsys.readouterr().out
    assert "telegram:42" in listed and "Ann Lee" in listed and "discord:42" in listed
    out = tmp_path / "export.zip"
    assert run("export", "42", "-o", str(out)) == 1  # two people have id 42: which one?
    err = capsys.readouterr().err
    assert "2 users match '42'" in err and "telegram:42" in err and "discord:42" in err
    assert not out.exists()
    assert run("export", "ann lee", "-o", str(out)) == 0  # a name is enough when it is unique
    assert "everything stored about telegram:42 (Ann Lee)" in capsys.readouterr().out
    data = json.loads(zipfile.ZipFile(io.BytesIO(out.read_bytes())).read("doppel-export.json"))
    assert data["conversations"][0]["messages"][0]["content"] == "delete me later zq"
    assert run("forget", "telegram:42") == 1  # not without --yes
    assert "Add --yes" in capsys.readouterr().err
    assert run("forget", "telegram:42", "--yes") == 0
    assert "forgot telegram:42 (Ann Lee)" in capsys.readouterr().out
    assert run("forget", "telegram:42", "--yes") == 1
    assert "no users match 'telegram:42'" in capsys.readouterr().err  # and none was made
    assert run("export", "telegram:42", "-o", str(out), "--config", str(cfg)) == 1
    assert run("users", "ann") == 0
    assert capsys.readouterr().out.startswith("No one matches.")
    assert run("export", "bo", "-o", str(out)) == 0  # the other one is still there
