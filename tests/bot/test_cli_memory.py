"""The public memory commands end to end, each in its own process: ingest, recall, ask,
persona show, and the demo persona answering with citations on first start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.auxil.eventually import HANG_S
from tests.bot.test_console import doppel_env
from tests.conftest import CORPUS, ROOT

pytestmark = pytest.mark.model

CONTRACTOR = "<20582259.1075855379239.JavaMail.evans@thyme>"


def config(tmp_path: Path, auto_ingest: bool = False) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[personas]\ndir = "{ROOT / "persona_data"}"\ndefault = "allen"\n'
        '[llm]\nmax_tokens = 24\nn_threads = 2\ntemperature = 0.0\nseed = 1\n'
        f'[memory]\nauto_ingest = {str(auto_ingest).lower()}\n'
        '[engine]\nchat_timeout_s = 900\n'  # a busy machine may be slow, never wrong
    )
    return path


def doppel(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(cfg), *args], input=stdin,
        capture_output=True, text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT,
    )


def test_ingest_recall_ask_and_show(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"not a pdf")
    proc = doppel(cfg, "ingest", "allen", str(CORPUS / "enron-allen-p" / "eml"), str(bad),
                  "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files_indexed"] == 60 and report["chunks_added"] > 30
    assert list(report["files_failed"]) == [str(bad)]

    proc = doppel(cfg, "ingest", "allen", str(CORPUS / "enron-allen-p" / "eml"))
    assert proc.returncode == 0, proc.stderr
    assert "60 unchanged" in proc.stdout and "chunks added: 0" in proc.stdout

    questions = "Who did you want as general contractor for the house?\n" \
                "What is the capital of Mongolia?\n"
    proc = doppel(cfg, "recall", "allen", "--k", "3", "--json", stdin=questions)
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["question"].startswith("Who did you want")
    assert first["hits"][0]["message_id"] == CONTRACTOR
    assert set(first["hits"][0]) >= {"score", "text", "source", "message_id", "subject", "date"}
    assert len(first["hits"]) <= 3
    assert second["hits"] == []

    proc = doppel(cfg, "ask", "allen", "--json", stdin=questions)
    assert proc.returncode == 0, proc.stderr
    grounded, unknown = (json.loads(line) for line in proc.stdout.splitlines())
    assert grounded["grounded"] is True and grounded["answer"]
    assert grounded["sources"][0]["citation"].startswith("[1] 2001-04-23")
    assert unknown == {"question": "What is the capital of Mongolia?", "grounded": False,
                       "sources": [], "answer": unknown["answer"]}
    assert "don't remember" in unknown["answer"]

    proc = doppel(cfg, "persona", "show", "allen")
    assert proc.returncode == 0, proc.stderr
    assert "memory: 60 files" in proc.stdout
    assert 'sign off with "Phillip"' in proc.stdout


def test_unknown_persona_and_missing_path_are_one_line_errors(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    proc = doppel(cfg, "recall", "bob", stdin="hi\n")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("doppel: There is no persona called 'bob'. "
                                   "Available: allen, storyteller.")
    proc = doppel(cfg, "ingest", "allen", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


def test_demo_persona_answers_with_citations_on_first_start(tmp_path: Path) -> None:
    cfg = config(tmp_path, auto_ingest=True)
    proc = doppel(cfg, "chat", "--persona", "allen", "--message",
                  "Who did you want as general contractor for the house?")
    assert proc.returncode == 0, proc.stderr
    answer, sources = proc.stdout.rstrip("\n").rsplit("\n", 1)
    assert answer.strip()
    assert sources.startswith("Sources: [1] 2001-04-23 'Johnnie, Thank you for meeting")


def test_ask_answers_every_question_even_after_one_fails(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    stdin = "x" * 5000 + "\nWho won the 2018 FIFA World Cup?\n"
    done = doppel(cfg, "ask", "allen", "--json", stdin=stdin)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1, done.stderr  # something failed, and said so
    assert "too long" in rows[0]["error"] and "answer" not in rows[0]
    assert rows[1]["question"] == "Who won the 2018 FIFA World Cup?"
    assert rows[1]["answer"] and not rows[1]["grounded"]  # the rest still answered


def test_exclusions_and_the_memory_inspector(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    folder = tmp_path / "docs"
    for name, text in {
        "notes/storage.txt": "The storage report for Sandra is due on Friday.",
        "notes/gas.md": "Gas prices at Henry Hub rose again this week.",
        "LICENSES/MIT.txt": "Permission is hereby granted, free of charge, to any person.",
        "SOURCES.md": "Mail from the Enron corpus, CC BY.",
        "drafts/unsent.txt": "A draft I never sent about the barbecue.",
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / ".doppelignore").write_text("# attributions are not memories either\n"
                                          "SOURCES.md\n")  # LICENSES/: left out anyway
    proc = doppel(cfg, "ingest", "allen", str(folder), "--exclude", "/drafts", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["files_indexed"], report["files_excluded"]) == (2, 3)

    proc = doppel(cfg, "memory", "list", "allen")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.splitlines()
    assert [line.rsplit("/", 1)[1] for line in listed] == ["gas.md", "storage.txt"]
    storage_id = listed[1].split()[0]
    proc = doppel(cfg, "memory", "show", "allen", "storage.txt")
    assert proc.returncode == 0, proc.stderr
    assert "storage report for Sandra is due on Friday" in proc.stdout
    assert "document" in proc.stdout
    proc = doppel(cfg, "memory", "show", "allen", "notes")  # two match: which one?
    assert proc.returncode == 2 and "2 files in allen's memory match 'notes'" in proc.stderr

    proc = doppel(cfg, "memory", "delete", "allen", storage_id)
    assert proc.returncode == 0, proc.stderr
    assert "forgot" in proc.stdout and ".doppelignore" in proc.stdout
    proc = doppel(cfg, "recall", "allen", "--json",
                  stdin="When is the storage report for Sandra due?\n")
    assert all("Sandra" not in h["text"] for h in json.loads(proc.stdout)["hits"])
    proc = doppel(cfg, "memory", "list", "allen", "--json")
    assert [json.loads(line)["path"].rsplit("/", 1)[1] for line in
            proc.stdout.splitlines()] == ["gas.md"]
