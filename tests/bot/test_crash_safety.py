"""kill -9 in the middle of work, then start again: real processes, the real model.

Nothing committed may be lost, the database must stay intact, an interrupted reply is marked
and its user told, and an interrupted ingest finishes on the next run with the same result
as an uninterrupted one.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.auxil.eventually import HANG_S
from tests.auxil.mailboxes import committed
from tests.auxil.servers import wait_until
from tests.bot.test_console import doppel, doppel_env, write_config
from tests.conftest import CORPUS, ROOT

pytestmark = pytest.mark.model


def rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()


def kill_when(proc: subprocess.Popen[bytes], seen: bytes, timeout: float = HANG_S) -> bytes:
    """Read the child's stdout until ``seen`` shows up, then SIGKILL it."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while seen not in out and time.monotonic() < deadline:
        chunk = proc.stdout.read1(256)  # type: ignore[attr-defined]
        if not chunk:
            break
        out += chunk
    proc.send_signal(signal.SIGKILL)
    proc.wait(HANG_S)
    assert seen in out, out.decode(errors="replace")
    return out


def test_kill_during_generation_keeps_the_question_and_marks_the_reply(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("max_tokens = 32", "max_tokens = 400"))
    proc = subprocess.Popen(doppel("--config", str(cfg), "chat", "--persona", "storyteller"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=doppel_env(), cwd=ROOT)
    assert proc.stdin is not None
    proc.stdin.write(b"Tell me a long story about a dragon who learns to bake bread.\n")
    proc.stdin.flush()
    kill_when(proc, b")\nGrandma Tilly: ")  # after the disclosure: the reply is next
    db = tmp_path / "data" / "doppel.db"
    stored = rows(db)
    assert stored[0] == ("user", "Tell me a long story about a dragon who learns to bake "
                                 "bread.", "complete")
    assert stored[1][0] == "assistant" and stored[1][2] == "pending"

    again = subprocess.run(doppel("--config", str(cfg), "chat", "--persona", "storyteller",
                                  "--message", "Are you still there?"),
                           capture_output=True, text=True, timeout=HANG_S, env=doppel_env(),
                           cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert "My last reply to you was cut off when I restarted" in again.stderr
    after = rows(db)
    assert after[1][2] == "interrupted" and after[:1] == stored[:1]
    assert [r[0] for r in after[2:]] == ["user", "assistant"] and after[3][2] == "complete"


def test_kill_during_speech_loses_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc = subprocess.Popen(doppel("--config", str(cfg), "chat", "--voice", "--persona",
                                   "storyteller", "-m", "Tell me about the little red hen."),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=doppel_env(), cwd=ROOT)
    kill_when(proc, b"\n")  # the text is out; the voice note is still being made
    db = tmp_path / "data" / "doppel.db"
    stored = rows(db)
    assert stored[0][:2] == ("user", "Tell me about the little red hen.")
    assert stored[1][2] in ("complete", "truncated", "pending")
    assert not list((tmp_path / "data").rglob("*.ogg.tmp"))
    subprocess.run(doppel("--config", str(cfg), "migrate"), check=True, timeout=HANG_S,
                   capture_output=True, env=doppel_env(), cwd=ROOT)
    assert rows(db)[:1] == stored[:1]


MBOX = CORPUS / "enron-allen-p" / "sent_mail.mbox"


def ingest(cfg: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(doppel("--config", str(cfg), "ingest", "allen", "--json", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=doppel_env(),
                            cwd=ROOT)


def memory_counts(data: Path) -> tuple[int, int]:
    with sqlite3.connect(data / "doppel.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        files = conn.execute("SELECT count(*) FROM memory_files").fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0]
    return files, chunks


def test_kill_during_ingest_then_the_rerun_finishes_the_job(tmp_path: Path) -> None:
    clean_dir, killed_dir = tmp_path / "clean", tmp_path / "killed"
    clean_dir.mkdir()
    killed_dir.mkdir()
    clean_cfg, killed_cfg = write_config(clean_dir), write_config(killed_dir)

    proc = ingest(killed_cfg, str(MBOX))
    db = killed_dir / "data" / "doppel.db"
    deadline = time.monotonic() + HANG_S
    while not committed(db) and time.monotonic() < deadline:  # kill it mid-mailbox
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(HANG_S)
    partial = memory_counts(killed_dir / "data")

    finish = ingest(killed_cfg, str(MBOX))
    out, err = finish.communicate(timeout=HANG_S)
    assert finish.returncode == 0, err.decode()
    clean = ingest(clean_cfg, str(MBOX))
    clean_out, err = clean.communicate(timeout=HANG_S)
    assert clean.returncode == 0, err.decode()
    assert memory_counts(killed_dir / "data") == memory_counts(clean_dir / "data")
    assert 0 < partial[1] < memory_counts(clean_dir / "data")[1]  # it really was cut short
    assert json.loads(clean_out)["documents_resumed"] == 0
    assert 0 < json.loads(out)["documents_resumed"] < 602  # the rest, not everything again


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_reply_keeps_what_was_written(tmp_path: Path,
                                                   how: signal.Signals) -> None:
    """Issue 33: a reply cut by SIGTERM (`chat -m`) or SIGHUP (the terminal closed) stayed
    `pending` and empty though its first words were shown."""
    from tests.auxil.llm_api import HOLD_FIRST, FakeLLMServer

    with FakeLLMServer() as llm:
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
            f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
            f'[llm]\nbackend = "openai"\napi_base = "{llm.base}"\n'
            '[engine]\nshutdown_grace_s = 1\n[memory]\nauto_ingest = false\n')
        proc = subprocess.Popen(doppel("--config", str(cfg), "chat", "-m",
                                       "Please hold on and think it over"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=doppel_env(), cwd=ROOT)
        # its first sentence is written; the model thinks on
        wait_until(lambda: bool(llm.holding), proc, "doppel chat -m")
        proc.send_signal(how)
        out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 128 + how, err.decode()
    assert b"Traceback" not in err and b"what was written is kept" in err
    kept = rows(tmp_path / "data" / "doppel.db")
    assert kept[0] == ("user", "Please hold on and think it over", "complete")
    assert kept[1] == ("assistant", HOLD_FIRST, "cancelled")
    assert out.decode().strip() and HOLD_FIRST.startswith(out.decode().strip())  # as shown
