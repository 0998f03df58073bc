"""`doppel doctor` on good and broken installations."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bot.doctor import FAIL, OK, WARN, diagnose, report
from engine.engine import Engine
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import MakeConfig, settings_of


def statuses(findings: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {f.what: f.status for f in findings}


async def test_a_fresh_install_is_healthy_and_never_prints_tokens(
        make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeLLM) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "MTA0.secret-token")
    config = make_config()
    before = statuses(diagnose(settings_of(config)))
    assert before["database"] == WARN  # not made yet
    engine = Engine(config, llm=fake_llm)
    await engine.start()
    await engine.stop()
    lines: list[str] = []
    assert report(settings_of(config), lines.append) == 0
    text = "\n".join(lines)
    assert re.search(r"\[  ok\] database .* revision (\d+) \(newest \1\), integrity ok", text)
    assert "DISCORD_TOKEN is set" in text and "secret-token" not in text
    assert re.search(r"\[  ok\] training .*transformers .*GGUF converters in", text)
    assert re.search(r"\[  ok\] llama.cpp +built without OpenMP", text)
    assert all(s in (OK, WARN) for s in statuses(diagnose(settings_of(config))).values())


def test_broken_pieces_are_reported(make_config: MakeConfig, tmp_path: Path) -> None:
    fake_model = tmp_path / "model.gguf"
    fake_model.write_bytes(b"not a model at all")
    xtts = tmp_path / "xtts"
    xtts.mkdir()
    config = make_config(llm={"model_path": str(fake_model), "n_gpu_layers": -1},
                         voice={"xtts_model_dir": str(xtts)})
    db = config.storage.data_dir / "doppel.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    found = {f.what: f for f in diagnose(settings_of(config))}
    assert found["LLM"].status == FAIL and "not a GGUF" in found["LLM"].detail
    assert found["GPU"].status == FAIL  # GPU layers asked of a CPU build
    assert found["XTTS (cloning)"].status == FAIL and "model.pth" in found["XTTS (cloning)"].detail
    assert found["database"].status == FAIL
    lines: list[str] = []
    assert report(settings_of(config), lines.append) == 1
    assert lines[-1].endswith("problem(s) found.")


def test_lock_drift_names_each_package_changed_by_hand(tmp_path: Path) -> None:
    from importlib import metadata

    from bot.doctor import LOCKS, _packages, lock_drift

    lock = tmp_path / "dev.txt"
    pytest_version = metadata.version("pytest")
    lock.write_text(
        f"pytest=={pytest_version} \\\n    --hash=sha256:00\n"
        "ruff==0.0.1 \\\n    --hash=sha256:00\n"
        "not-a-real-package-xyz==1.0 \\\n    --hash=sha256:00\n"
        'async-timeout==5.0.1 ; python_full_version < "3.11" \\\n    --hash=sha256:00\n')
    pinned, drift = lock_drift(lock)
    assert pinned == 3  # the marker leaves async-timeout out on this Python
    assert drift == [f"ruff {metadata.version('ruff')} (lock 0.0.1)",
                     "not-a-real-package-xyz missing (lock 1.0)"]
    env = tmp_path / "venv"
    env.mkdir()
    assert _packages(env).status == WARN  # not made by .ci/setup
    (env / ".doppel-lock").write_text("dev.txt\n")
    found = _packages(env, tmp_path)
    assert found.status == WARN and "2 of 3 differ from dev.txt: ruff" in found.detail
    # This test environment, made by .ci/setup from the real lock, matches it.
    if (Path(sys.prefix) / ".doppel-lock").is_file():
        assert _packages(locks=LOCKS).status == OK, _packages(locks=LOCKS).detail
