"""Parsing real mail and document samples (shared/corpus/docs, enron-allen-p)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.memory.clean import strip_mail
from engine.memory.parse import ParseError, iter_files, parse_file
from tests.conftest import CORPUS

DOCS = CORPUS / "docs"


def one(path: Path) -> str:
    docs = parse_file(path)
    assert len(docs) == 1
    return docs[0].text


@pytest.mark.parametrize(("name", "expected"), [
    ("eml/japanese_shift_jis_8bit.eml", "あいうえお"),
    ("eml/korean_euc_kr_base64_mbox_from_line.eml", "우리는 하나님을 믿습니다"),
    ("eml/bilingual_utf8_qp_russian.eml", "эта линия по-русски"),
    ("eml/outlook365_windows1252_qp_inline_image_attachments.eml", "Test email"),
    ("msg/minimal_plain_utf8_sender.msg", "This is the body of the test email message"),
    ("msg/russian_rtf_no_headers.msg", "Имя пользователя"),
    ("pdf/google_docs_export.pdf", "Beautiful is better than ugly"),
    ("docx/paper_with_table_and_image.docx", "AutoGen"),
])
def test_charsets_and_formats_decode(name: str, expected: str) -> None:
    assert expected in one(DOCS / name)


def test_html_only_mail_becomes_text() -> None:
    doc = parse_file(DOCS / "eml/html_only_latin1_thunderbird.eml")[0]
    assert doc.html
    assert "<" not in doc.text and "http://www.longurlmaker.com" in doc.text


def test_mail_metadata_is_kept() -> None:
    doc = parse_file(DOCS / "msg/french_accented_subject.msg")[0]
    assert doc.is_mail
    assert doc.subject.startswith("Un sujet bien défini Àéroport")
    assert doc.sender_address == "julie.clarebots@qbere.com"
    assert doc.date is not None and doc.date.year == 2024
    bare = parse_file(DOCS / "msg/nested_msg_and_pdf_attachments.msg")[0]
    assert (bare.sender, bare.date) == ("", None)  # an unsent draft: no headers, no crash


@pytest.mark.parametrize(("name", "reason"), [
    ("pdf/encrypted_user_password.pdf", "encrypted PDF"),
    ("pdf/scanned_report_image_only.pdf", "no text layer"),
    ("docx/strict_ooxml.docx", "Strict Open XML document, which cannot be read: save it"),
])
def test_unreadable_files_say_why(name: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_file(DOCS / name)


@pytest.mark.parametrize(("name", "data", "says"), [
    ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "damaged, or not really a PDF"),
    ("broken.docx", b"PK\x03\x04 not a zip", "not a valid .docx"),
    ("broken.msg", b"\xd0\xcf\x11\xe0 no", "damaged, or not really an Outlook message"),
])
def test_garbage_files_say_so_in_plain_words(tmp_path: Path, name: str, data: bytes,
                                             says: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(data)
    with pytest.raises(ParseError, match=says) as err:
        parse_file(bad)
    assert "Error" not in str(err.value)  # no library class names for the person


def test_mbox_gives_every_mail_with_ids() -> None:
    docs = parse_file(CORPUS / "enron-allen-p/sent_mail.mbox")
    assert len(docs) == 602
    assert all(d.message_id.startswith("<") for d in docs)
    assert docs[0].source.endswith("sent_mail.mbox#0")
    assert sum(d.sender_address == "phillip.allen@enron.com" for d in docs) > 550


def test_iter_files_recurses_and_filters(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    for name in ("a/x.eml", "a/b/y.PDF", "a/b/z.png", "a/notes.md", "a/data.toml"):
        (tmp_path / name).write_text("x")
    found = sorted(p.relative_to(tmp_path).as_posix() for p in iter_files([tmp_path]))
    assert found == ["a/b/y.PDF", "a/notes.md", "a/x.eml"]


# -- cleaning -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "reply_aol_original_message_alternative.eml",
    "reply_apple_mail_on_wrote_latin1.eml",
    "reply_gmail_on_wrote_alternative.eml",
    "reply_hotmail_quoted_header_block.eml",
    "reply_outlook_from_sent_block_latin1.eml",
    "reply_yahoo_original_message.eml",
])
def test_quoted_replies_are_dropped(name: str) -> None:
    text, removed = strip_mail(one(DOCS / "eml" / name))
    assert text == "Hello"
    assert "quoted reply" in removed


def test_yahoo_reply_keeps_the_new_text_only() -> None:
    text, _ = strip_mail(one(DOCS / "eml/reply_yahoo_dashes_on_wrote_base64.eml"))
    assert text.startswith("Hi Katharine. Sounds great.")
    assert "wrote:" not in text


def test_lotus_notes_forward_signature_disclaimer_and_quotes() -> None:
    body = (
        "Jeff,\n\nPlease see the note below.\n\nPhillip\n\n"
        "---------------------- Forwarded by Phillip K Allen/HOU/ECT on 10/04/2000 "
        "02:11 PM ---------------------------\nsomeone else's words\n"
    )
    text, removed = strip_mail(body)
    assert text == "Jeff,\n\nPlease see the note below.\n\nPhillip"
    assert removed == ["forwarded block"]
    text, removed = strip_mail(
        "Fine by me.\n> what about friday?\n\nThis e-mail is confidential and intended "
        "solely for the addressee.\n-- \nJohn Smith\nACME Corp"
    )
    assert text == "Fine by me."
    assert {"quoted lines", "signature", "disclaimer or footer"} <= set(removed)


def test_notes_reply_header_is_cut() -> None:
    body = ("Sounds good.\n\nPhillip\n\n\n\"Jane Doe\" <jd@x.com> on 10/03/2000 10:02:13 AM\n"
            "To: Phillip K Allen/HOU/ECT@ECT\ncc:\nSubject: plans\n\nThe old text")
    assert strip_mail(body)[0] == "Sounds good.\n\nPhillip"


def test_a_raw_8bit_subject_is_read_in_the_mails_charset(tmp_path: Path) -> None:
    mail = tmp_path / "cafe.eml"
    mail.write_bytes(b"From: a@example.com\nSubject: Caf\xe9 rent\n"
                     b"Content-Type: text/plain; charset=iso-8859-1\n\nCaf\xe9 body\n")
    doc = parse_file(mail)[0]
    assert (doc.subject, doc.text.strip()) == ("Café rent", "Café body")


def test_a_placeholder_pdf_title_gives_way_to_the_file_name(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(DOCS / "pdf" / "google_docs_export.pdf"))
    writer.add_metadata({"/Title": "(anonymous)"})
    path = tmp_path / "rent-report.pdf"
    with path.open("wb") as f:
        writer.write(f)
    assert parse_file(path)[0].subject == "rent-report"


@pytest.mark.parametrize(("path", "patterns", "left_out"), [
    ("LICENSES/MIT.txt", ["LICENSES/"], True),
    ("a/LICENSES/MIT.txt", ["LICENSES/"], True),
    ("LICENSES", ["LICENSES/"], False),  # a file of that name is not the folder
    ("notes/SOURCES.md", ["SOURCES.md"], True),
    ("notes/run.log.txt", ["*.log.txt"], True),
    ("drafts/x.txt", ["/drafts"], True),
    ("mail/drafts/x.txt", ["/drafts"], False),  # anchored at the folder ingested
    ("mail/drafts/x.txt", ["mail/drafts"], True),
    ("notes/a.txt", ["notes/*.txt"], True),
    ("notes/a.txt", ["# a comment?", "other/"], False),
])
def test_exclusion_patterns_read_like_gitignore(path: str, patterns: list[str],
                                                left_out: bool) -> None:
    from engine.memory.parse import ignored

    assert ignored(Path(path), patterns) is left_out


def test_licences_and_hidden_files_are_left_out_of_folders_by_default(tmp_path: Path) -> None:
    for name in ("mail/a.eml", "LICENSE.txt", "LICENSES/CC-BY.txt", ".git/notes.txt",
                 "mail/.draft.eml", "COPYING.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    left_out: list[Path] = []
    found = list(iter_files([tmp_path], excluded=left_out))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["mail/a.eml"]
    assert len(left_out) == 5
    assert list(iter_files([tmp_path / "LICENSE.txt"])) == [tmp_path / "LICENSE.txt"]
