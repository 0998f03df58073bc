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
    assert "2 users are '42'" in err and "telegram:42" in err and "discord:42" in err
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
    assert "no user is exactly 'telegram:42'" in capsys.readouterr().err  # none was made
    assert run("export", "telegram:42", "-o", str(out), "--config", str(cfg)) == 1
    assert run("users", "ann") == 0
    assert capsys.readouterr().out.startswith("No one matches.")
    assert run("export", "bo", "-o", str(out)) == 0  # the other one is still there


def test_forget_and_export_act_only_on_an_exact_user(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 33: `forget ob --yes` forgot api:bob, `forget lic` api:alice. A part of an id
    or a name lists who it may mean and does nothing; names print escaped."""
    cfg = write_config(tmp_path)
    sly = "m\x1b[2J\nroot"  # an id the HTTP API took as it came

    async def chat() -> None:
        engine = Engine(load_config(cfg), llm=FakeLLM(["Hi."] * 3))
        await engine.start()
        for user in (UserRef("api", "bob"), UserRef("api", "alice"),
                     UserRef("api", sly, "Mallory")):
            await (await engine.chat(user, "hello")).result()
        await engine.stop()

    def run(*args: str) -> int:
        return main(["--config", str(cfg), *args])

    asyncio.run(chat())
    for part in ("ob", "lic", "api:b", "Mall"):
        assert run("forget", part, "--yes") == 1
        err = capsys.readouterr().err
        assert f"no user is exactly '{part}'" in err and "Give one of these" in err
    assert "api:bob" in err or "Mallory" in err
    assert run("export", "ali", "-o", str(tmp_path / "x.zip")) == 1
    assert not (tmp_path / "x.zip").exists()
    assert run("users") == 0
    listed = capsys.readouterr().out
    assert "\x1b" not in listed and "api:m\\x1b[2J\\nroot" in listed
    assert len(listed.strip().splitlines()) == 3  # one line a user
    assert run("forget", "bob", "--yes") == 0  # the exact id
    assert "forgot api:bob" in capsys.readouterr().out
    assert run("users") == 0
    assert "api:alice" in capsys.readouterr().out
