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


def test_operator_exports_then_forgets_a_user(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)

    async def chat() -> None:
        engine = Engine(load_config(cfg), llm=FakeLLM(["Got it."]))
        await engine.start()
        await (await engine.chat(UserRef("telegram", "42"), "delete me later zq")).result()
        await engine.stop()

    asyncio.run(chat())
    out = tmp_path / "export.zip"
    assert main(["--config", str(cfg), "export", "telegram:42", "-o", str(out)]) == 0
    data = json.loads(zipfile.ZipFile(io.BytesIO(out.read_bytes())).read("doppel-export.json"))
    assert data["conversations"][0]["messages"][0]["content"] == "delete me later zq"
    assert main(["--config", str(cfg), "forget", "telegram:42"]) == 1  # not without --yes
    assert "Add --yes" in capsys.readouterr().err
    assert main(["--config", str(cfg), "forget", "telegram:42", "--yes"]) == 0
    assert "forgot telegram:42" in capsys.readouterr().out
    assert main(["--config", str(cfg), "forget", "telegram:42", "--yes"]) == 0
    assert "nothing stored about telegram:42" in capsys.readouterr().out  # and none made
    assert main(["--config", str(cfg), "export", "telegram:42", "-o", str(out)]) == 1
    assert "nothing is stored about telegram:42" in capsys.readouterr().err
    assert main(["--config", str(cfg), "forget", "telegram42", "--yes"]) == 2
