"""Ingest survives hostile and broken files: each is reported and skipped, the rest kept."""

from __future__ import annotations

import io
import json
import random
import signal
import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfWriter

from engine.engine import Engine
from engine.memory.ingest import Ingestor
from engine.memory.parse import ParseError, Skipped, parse_file, read_file
from tests.auxil.eventually import HANG_S
from tests.auxil.mailboxes import committed, one_line_mails
from tests.conftest import CORPUS

DOCS = CORPUS / "docs"
GOOD = ("From: phillip.allen@enron.com\nTo: jeff@example.com\nSubject: Storage report\n"
        "Message-ID: <good@example.com>\nDate: Mon, 2 Oct 2000 09:00:00 -0500\n\n"
        "Jeff, the storage report is due on Friday. Phillip\n")


def zip_bomb(path: Path) -> Path:
    """A .docx whose document.xml unpacks to 40 MB of zeros from a few KB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * (40 * 1024 * 1024))
    return path


def many_pages(path: Path, pages: int) -> Path:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=72, height=72)
    with path.open("wb") as f:
        writer.write(f)
    return path


def broken_msg(path: Path) -> Path:
    data = bytearray((DOCS / "msg" / "minimal_plain_utf8_sender.msg").read_bytes())
    data[512:4096] = b"\xff" * (4096 - 512)  # the OLE directory and first streams, trashed
    path.write_bytes(bytes(data))
    return path


MBOX = (
    "From MAILER-DAEMON Mon Oct  2 09:00:00 2000\n"
    "From: =?utf-8?B?not base64 at all?= <a@example.com>\n"
    "Subject: =?iso-8859-1?Q?Caf=E9_prices?=\n"
    "This line is not a header at all\n"
    "Date: not a date\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    "Body in latin-1 pretending to be utf-8: caf\xe9 cr\xe8me\n\n"
    "From MAILER-DAEMON Mon Oct  2 10:00:00 2000\n"
    "From: b@example.com\nSubject: second\nContent-Type: text/plain; charset=x-unknown-cs\n\n"
    "Second mail, unknown charset.\n"
).encode("latin-1")


def test_each_hostile_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    cases = {
        zip_bomb(tmp_path / "bomb.docx"): "zip bomb",
        many_pages(tmp_path / "huge.pdf", 3001): r"too many pages \(3001",
        broken_msg(tmp_path / "broken.msg"): "",  # the OLE library's own words
        tmp_path / "junk.eml": "binary data",
        tmp_path / "random.txt": "not text: binary data",
        tmp_path / "sparse.txt": r"too large \(1074 MB; the limit is 210 MB\)",
        tmp_path / "big.txt": r"too large for a text file \(31 MB; the limit is 20 MB\)",
        tmp_path / "junk.mbox": "no mails in it",
        tmp_path / "zeros.mbox": "not a mailbox: binary data",
        tmp_path / "line.txt": r"too large for a text file \(52 MB; the limit is 20 MB\)",
    }
    with (tmp_path / "zeros.mbox").open("wb") as f:  # 1 GiB of NULs on paper
        f.truncate(1024 ** 3)
    (tmp_path / "line.txt").write_bytes(b"x" * (50 * 2**20))  # one 50 MB line
    (tmp_path / "junk.eml").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "random.txt").write_bytes(random.Random(3).randbytes(64 * 1024))
    with (tmp_path / "sparse.txt").open("wb") as f:  # 1 GiB on paper, nothing on disk
        f.truncate(1024 ** 3)
    with (tmp_path / "big.txt").open("wb") as f:
        f.truncate(30 * 1024 ** 2)
    (tmp_path / "junk.mbox").write_text("just some words\nand no mail headers at all\n")
    for path, reason in cases.items():
        with pytest.raises(ParseError, match=reason or None):
            parse_file(path)


def test_a_giant_mail_in_a_mailbox_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    box = tmp_path / "box.mbox"
    with box.open("wb") as f:
        f.write(GOOD.replace("From: ", "From phillip Mon Oct  2 09:00:00 2000\nFrom: ", 1)
                .encode() + b"\n")
        f.write(b"From x Mon Oct  2 09:00:00 2000\nFrom: x@example.com\nSubject: huge\n\n")
        f.write(b"y" * (51 * 2**20) + b"\n\n")  # one 51 MB line, no spaces
        f.write(MBOX)
    read = [doc for _, doc, _ in read_file(box)]
    assert [type(d).__name__ for d in read] == ["SourceDoc", "Skipped", "SourceDoc",
                                                 "SourceDoc"]
    assert read[1] == Skipped("a mail over 50 MB")
    assert [d.subject for d in parse_file(box)] == ["Storage report", "Café prices", "second"]


def test_malformed_mbox_with_mixed_charsets_still_parses(tmp_path: Path) -> None:
    box = tmp_path / "mixed.mbox"
    box.write_bytes(MBOX)
    first, second = parse_file(box)
    assert "caf" in first.text and first.subject.startswith("Caf")
    assert first.date is None  # "not a date" is not guessed
    assert "unknown charset" in second.text


async def test_ingest_keeps_the_good_and_reports_the_bad(memory_engine: Engine,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    zip_bomb(folder / "bomb.docx")
    many_pages(folder / "huge.pdf", 3001)
    broken_msg(folder / "broken.msg")
    (folder / "junk.eml").write_bytes(io.BytesIO(bytes(range(256)) * 64).getvalue())
    (folder / "mixed.mbox").write_bytes(MBOX)
    (folder / "good.eml").write_text(GOOD)
    report = await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run(
        [folder])
    assert sorted(Path(p).name for p in report.files_failed) == [
        "bomb.docx", "broken.msg", "huge.pdf", "junk.eml"]
    assert report.files_indexed == 2 and report.chunks_added >= 1
    hits = await memory_engine.memory.recall("allen", "When is the storage report due?")
    assert hits and hits[0].message_id == "<good@example.com>"


def test_a_long_line_without_spaces_never_makes_an_oversized_chunk(
        memory_engine: Engine) -> None:
    from engine.memory.chunk import chunk_text

    count = memory_engine.memory.embedder.count_tokens
    line = "a" * 200_000 + " and then some words. " + "x" * 50_000
    chunks = chunk_text(line, 500, 50, count)
    assert all(count(c) <= 500 for c in chunks)
    assert "".join("".join(chunks).split()).count("a") >= 200_000  # nothing dropped


def random_lines(n: int) -> list[str]:
    rng = random.Random(11)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
             for _ in range(2000)]
    return [" ".join(rng.choice(words) for _ in range(12)).capitalize() + "."
            for _ in range(n)]


@pytest.mark.model
def test_a_100k_mail_mbox_streams_stops_on_ctrl_c_and_resumes(tmp_path: Path) -> None:
    from tests.bot.test_console import doppel, doppel_env, write_config
    from tests.conftest import ROOT

    cfg = write_config(tmp_path)
    box = one_line_mails(tmp_path / "notes.mbox", 100_000, random_lines(200))
    command = doppel("--config", str(cfg), "ingest", "allen", str(box), "--json")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=doppel_env(), cwd=ROOT)
    db = tmp_path / "data" / "doppel.db"
    deadline = time.monotonic() + HANG_S
    while not committed(db) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C, mid-mailbox
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 130, err.decode()
    assert b"run the same command again to go on where it stopped" in err
    assert b"Traceback" not in err

    again = subprocess.run(command, capture_output=True, timeout=HANG_S, env=doppel_env(),
                           cwd=ROOT)
    assert again.returncode == 0, again.stderr.decode()
    report = json.loads(again.stdout)
    assert 0 < report["documents_resumed"] < 100_000  # went on, did not start over
    assert report["peak_rss_mb"] < 1024  # streamed: memory does not grow with the box
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT sha256 != '', docs_read FROM memory_files").fetchall()
        chunks = conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0]
    assert done == [(1, 100_000)]
    assert chunks == 200  # each distinct line once, none lost to the stop


def test_ingest_never_follows_a_link_out_of_the_folder(tmp_path: Path) -> None:
    """Issue 33: `ln -s /etc/passwd notes/passwd.txt; doppel ingest NAME notes/` stored
    the file and the persona quoted it. A link inside the folder is read; one out of it is
    not, and the report names it."""
    from tests.bot.test_console import doppel, doppel_env, write_config
    from tests.conftest import ROOT

    cfg = write_config(tmp_path)
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:the operator's secret shadow line\n")
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "trip.txt").write_text("We drove to Portland for the rose garden in June.\n")
    (notes / "passwd.txt").symlink_to(secret)
    (notes / "linked").symlink_to(secret.parent, target_is_directory=True)
    (notes / "sub" / "again.txt").symlink_to(notes / "trip.txt")  # inside: read once
    done = subprocess.run(doppel("--config", str(cfg), "ingest", "allen", str(notes),
                                 "--json"), capture_output=True, timeout=HANG_S,
                          env=doppel_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    # (a linked folder is not gone into at all)
    assert [Path(p).name for p in report["files_outside"]] == ["passwd.txt"]
    with sqlite3.connect(tmp_path / "data" / "doppel.db") as conn:
        texts = " ".join(t for (t,) in conn.execute("SELECT text FROM memory_chunks"))
        paths = [p for (p,) in conn.execute("SELECT path FROM memory_files")]
    assert "Portland" in texts and "secret shadow" not in texts
    assert paths == [str((notes / "trip.txt").resolve())]
    plain = subprocess.run(doppel("--config", str(cfg), "ingest", "allen", str(notes)),
                           capture_output=True, text=True, timeout=HANG_S,
                           env=doppel_env(), cwd=ROOT)
    assert "not read: 1 link that leads out of the folder given" in plain.stdout


def test_a_megabyte_subject_is_cut_when_the_mail_is_read(tmp_path: Path) -> None:
    """Issue 33: a 1 MB Subject was prepended to every chunk of its mail and embedded whole
    (312 s and 1 GB for one mail). Headers are cut as they are read."""
    mail = tmp_path / "huge-subject.eml"
    refs = " ".join(f"<r{i}@example.com>" for i in range(20_000))
    mail.write_text(GOOD.replace("Subject: Storage report", "Subject: " + "storage " * 130_000)
                    .replace("Message-ID:", f"References: {refs}\nMessage-ID:"))
    [doc] = parse_file(mail)
    assert len(doc.subject) <= 300 and doc.subject.startswith("storage storage")
    assert doc.subject.endswith("…")
    assert len(doc.references) == 50 and doc.references[-1] == "<r19999@example.com>"
    assert "storage report is due on Friday" in doc.text


def test_a_file_name_that_is_not_utf8_is_read_and_shown_escaped(tmp_path: Path) -> None:
    """Issue 33: a file name with invalid UTF-8 stopped the whole ingest
    (UnicodeEncodeError), leaving files "partly read"."""
    import os

    from tests.bot.test_console import doppel, doppel_env, write_config
    from tests.conftest import ROOT

    cfg = write_config(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    odd = os.path.join(os.fsencode(notes), b"caf\xe9 \x1b[31mnotes.txt")
    with open(odd, "wb") as f:
        f.write(b"We drove to Portland for the rose garden in June.\n")
    (notes / "plain.txt").write_text("The storage report is due on Friday morning.\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(doppel("--config", str(cfg), *args), capture_output=True,
                              text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT)

    done = run("ingest", "allen", str(notes))
    assert done.returncode == 0, done.stderr
    assert "2 indexed" in done.stdout and "0 failed" in done.stdout
    listed = run("memory", "list", "allen")
    assert listed.returncode == 0, listed.stderr
    assert "caf\\xe9 \\x1b[31mnotes.txt" in listed.stdout and "\x1b" not in listed.stdout
    again = run("ingest", "allen", str(notes))  # known by the same name: unchanged
    assert "2 unchanged" in again.stdout, again.stdout


def test_a_lost_or_damaged_vector_store_is_rebuilt_or_said_in_one_line(
        tmp_path: Path) -> None:
    """Issue 33: with the Chroma folder deleted, memory was silently empty and ingest said
    "unchanged, 0 indexed" for ever; a damaged chroma.sqlite3 crashed chat with a long
    traceback and ingest printed one and then "Ingested", rc 0."""
    import shutil

    from tests.bot.test_console import doppel, doppel_env, write_config
    from tests.conftest import ROOT

    cfg = write_config(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.txt").write_text("The storage report is due on Friday morning.\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(doppel("--config", str(cfg), *args), capture_output=True,
                              text=True, timeout=HANG_S, env=doppel_env(), cwd=ROOT)

    assert run("ingest", "allen", str(notes)).returncode == 0
    shutil.rmtree(tmp_path / "data" / "chroma")
    again = run("ingest", "allen", str(notes), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["files_rebuilt"] == 1 and report["files_indexed"] == 1
    store = tmp_path / "data" / "chroma" / "chroma.sqlite3"
    store.write_bytes(b"this is not a database at all " * 1000)
    broken = run("ingest", "allen", str(notes))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr
    assert f"the memory's vector store at {tmp_path / 'data' / 'chroma'} is damaged" in (
        broken.stderr)
    assert "Ingested" not in broken.stdout
    chat = run("chat", "-m", "When is the storage report due?")
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
    assert "Traceback" not in chat.stderr and "is damaged" in chat.stderr


def test_a_body_that_is_not_the_base64_it_claims_is_no_text(tmp_path: Path) -> None:
    """Issue 33: an invalid base64 mail body was decoded into garbage and stored."""
    head = ("From: phillip.allen@enron.com\nSubject: {s}\nContent-Type: text/plain; "
            "charset=utf-8\nContent-Transfer-Encoding: base64\n\n")
    (tmp_path / "bad.eml").write_text(head.format(s="bad") + "This is not base64 at all!!\n")
    (tmp_path / "good.eml").write_text(head.format(s="good")
                                       + "VGhlIHN0b3JhZ2UgcmVwb3J0IGlzIGR1ZSBvbiBGcmlkYXku\n")
    [bad] = parse_file(tmp_path / "bad.eml")
    [good] = parse_file(tmp_path / "good.eml")
    assert bad.text == "" and good.text.strip() == "The storage report is due on Friday."
