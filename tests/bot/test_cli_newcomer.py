"""The command line a newcomer meets: help never runs an action, options go anywhere, a
config error names the file, read-only commands work beside a running bot."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.cli import main
from engine.locking import DataDirLock
from tests.bot.test_console import write_config


def test_help_after_a_story_action_shows_help_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    for args in (["story", "create", "--help"], ["story", "create", "genre=animals", "-h"]):
        assert main(["--config", str(cfg), *args]) == 0
        assert "usage: doppel story" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()  # no engine was even started


def test_options_work_after_the_command(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    assert main(["check", "--config", str(cfg)]) == 0
    assert f"{cfg}: OK" in capsys.readouterr().out
    assert main(["persona", "list", "--config", str(cfg)]) == 0


def test_a_config_error_names_the_file_it_is_in(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    other = tmp_path / "staging.toml"
    other.write_text(cfg.read_text().replace('default = "allen"', 'default = "nobody"'))
    assert main(["check", "--config", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other}: [personas] default is 'nobody'" in err


def test_records_commands_work_beside_a_running_bot_and_others_name_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    assert main(["--config", str(cfg), "story", "genre", "add", "space pirates"]) == 0
    capsys.readouterr()
    running = DataDirLock(tmp_path / "data")  # what `doppel run` holds while it runs
    running.acquire()
    try:
        assert main(["--config", str(cfg), "story", "genres"]) == 0
        assert "space pirates" in capsys.readouterr().out
        assert main(["--config", str(cfg), "story", "history"]) == 0
        assert "No stories yet" in capsys.readouterr().out
        assert main(["--config", str(cfg), "persona", "show", "allen"]) == 0
        shown = capsys.readouterr().out
        assert "memory: not built yet from its" in shown and "doppel ingest allen" in shown
        assert main(["--config", str(cfg), "users"]) == 0
        assert "console:" in capsys.readouterr().out
        assert main(["--config", str(cfg), "ingest", "allen"]) == 2  # needs the data dir
        err = capsys.readouterr().err
        assert f"another Doppel process (pid {__import__('os').getpid()}, `" in err
        assert "persona show, story history, users, export) work beside it" in err
    finally:
        running.release()
    with sqlite3.connect(tmp_path / "data" / "doppel.db") as conn:  # nothing half-written
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_api_keys_are_made_listed_and_revoked_beside_a_running_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    running = DataDirLock(tmp_path / "data")
    (tmp_path / "data").mkdir()
    running.acquire()
    try:
        assert main(["--config", str(cfg), "api-token", "create", "telegram:42", "--scope",
                     "chat", "--scope", "account", "--name", "web app"]) == 0
        made = capsys.readouterr().out
        secret = made.splitlines()[1]
        assert made.startswith("key 1 for telegram:42 (account, chat):")
        assert secret.startswith("dpl_") and len(secret) > 40
        assert main(["--config", str(cfg), "api-token", "list"]) == 0
        listed = capsys.readouterr().out
        assert "telegram:42" in listed and "web app" in listed and secret not in listed
        assert main(["--config", str(cfg), "api-token", "revoke", "1"]) == 0
        assert main(["--config", str(cfg), "api-token", "revoke", "1"]) == 1
        assert main(["--config", str(cfg), "api-token", "list"]) == 0
        assert "No API keys yet." in capsys.readouterr().out
    finally:
        running.release()
    with sqlite3.connect(tmp_path / "data" / "doppel.db") as conn:  # only a hash is kept
        assert secret not in str(conn.execute("SELECT * FROM api_tokens").fetchall())


def test_a_data_dir_that_is_a_file_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 33: `data_dir` naming a file passed `doppel check` and then ended in a long
    traceback. Both say, in one line, which path and what to do."""
    cfg = write_config(tmp_path)
    (tmp_path / "data").write_text("not a folder")
    for args in (["check"], ["users"], ["story", "history"]):
        assert main(["--config", str(cfg), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"[storage] data_dir: {tmp_path / 'data'} is a file, not a folder" in err
    (tmp_path / "data").unlink()
    (tmp_path / "data").mkdir()
    assert main(["--config", str(cfg), "check"]) == 0
