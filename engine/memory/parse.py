"""Read files into documents: mail (.eml, .mbox, .msg), documents (.pdf, .docx, .txt, .md).

Formats are parsed by well-kept libraries (the stdlib ``email``/``mailbox``, extract-msg,
pypdf, python-docx, BeautifulSoup for HTML bodies); this module only maps their output
to :class:`SourceDoc`. A file that cannot be read raises :class:`ParseError` with a reason.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import fnmatch
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

MAIL_SUFFIXES = {".eml", ".mbox", ".msg"}
DOC_SUFFIXES = {".pdf", ".docx", ".txt", ".md"}
SUFFIXES = MAIL_SUFFIXES | DOC_SUFFIXES


HEADER_CHARS = 300
"""The longest Subject, From, Message-ID kept (longer ones are cut, with an ellipsis)."""
RECIPIENTS_CHARS = 2000
REFERENCES_KEPT = 50
"""The newest ids of a References header kept (enough to find a thread)."""


def path_text(path: Path | str) -> str:
    """A path as text that can be stored and shown: bytes of a name that are not UTF-8 (a
    file from another system) as ``\\xNN`` escapes, so one odd name never stops an ingest."""
    text = str(path)
    if text.isprintable() and not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


class ParseError(Exception):
    """A file could not be read; the message says why, for the ingest report."""


@dataclass
class SourceDoc:
    """One mail or one document, its text as extracted (cleaning comes later)."""

    text: str
    is_mail: bool
    source: str
    html: bool = False
    message_id: str = ""
    subject: str = ""
    sender: str = ""
    recipients: str = ""
    date: datetime | None = None
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Headers are a line each in the memory and the prompt: a 1 MB Subject (a hostile
        # or broken mail) is cut here, once, not embedded with every chunk of its mail.
        self.subject = _capped(self.subject, HEADER_CHARS)
        self.sender = _capped(self.sender, HEADER_CHARS)
        self.recipients = _capped(self.recipients, RECIPIENTS_CHARS)
        self.message_id = self.message_id[:HEADER_CHARS]
        self.in_reply_to = self.in_reply_to[:HEADER_CHARS]
        self.references = [r[:HEADER_CHARS] for r in self.references[-REFERENCES_KEPT:]]

    @property
    def sender_address(self) -> str:
        return email.utils.parseaddr(self.sender)[1].lower()


IGNORE_FILE = ".doppelignore"
DEFAULT_EXCLUDE = (".*", "LICENSE*", "LICENCE*", "COPYING*", "LICENSES/")
"""Left out of every folder ingested: hidden files and folders, and licence texts (they
are not anyone's writing). A file named on the command line is always read."""


def iter_files(paths: list[Path], exclude: Sequence[str] = (),
               excluded: list[Path] | None = None,
               outside: list[Path] | None = None) -> Iterator[Path]:
    """Files with a known suffix under ``paths`` (recursive), sorted, each once; minus those
    matching :data:`DEFAULT_EXCLUDE`, ``exclude`` or a ``.doppelignore`` in a folder given
    (see :func:`ignored`), which are added to ``excluded``, and minus links in a folder
    that lead out of it (``ln -s /etc/passwd notes/``), which are added to ``outside``."""
    seen: set[Path] = set()
    for root in paths:
        if root.is_dir():
            patterns = [*DEFAULT_EXCLUDE, *exclude, *read_ignore_file(root / IGNORE_FILE)]
            base = root.resolve()
            candidates = []
            for p in sorted(root.rglob("*")):
                if not p.resolve().is_relative_to(base):
                    if outside is not None and p.is_file():
                        outside.append(p)
                elif not ignored(p.relative_to(root), patterns):
                    candidates.append(p)
                elif excluded is not None and p.is_file() and p.suffix.lower() in SUFFIXES:
                    excluded.append(p)
        elif ignored(Path(root.name), exclude):
            candidates = []
            if excluded is not None:
                excluded.append(root)
        else:
            candidates = [root]
        for p in candidates:
            if p.is_file() and p.suffix.lower() in SUFFIXES and p.resolve() not in seen:
                seen.add(p.resolve())
                yield p


def read_ignore_file(path: Path) -> list[str]:
    """The patterns of a ``.doppelignore``: one a line, ``#`` comments, blank lines skipped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def ignored(relative: Path, patterns: Sequence[str]) -> bool:
    """Whether a path (relative to the folder ingested) matches one of gitignore-style
    ``patterns``: ``LICENSES/`` (a folder anywhere), ``SOURCES.md`` or ``*.log`` (a name
    anywhere), ``/drafts`` (anchored at the folder), ``notes/*.txt`` (a relative path)."""
    parts = relative.parts
    posix = relative.as_posix()
    for raw in patterns:
        folder_only = raw.endswith("/")
        pattern = raw.strip("/")
        if not pattern:
            continue
        if raw.startswith("/") or "/" in pattern:  # a path from the folder ingested
            if fnmatch.fnmatchcase(posix, pattern) or any(
                    fnmatch.fnmatchcase("/".join(parts[:i]), pattern)
                    for i in range(1, len(parts))):
                return True
            continue
        names = parts[:-1] if folder_only else parts
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return True
    return False


MAX_FILE_BYTES = 200 * 1024 * 1024
"""Larger files are skipped; a mailbox is read as a stream and may be larger."""
MAX_MBOX_BYTES = 8 * 1024 * 1024 * 1024
MAX_MAIL_BYTES = 50 * 1024 * 1024
"""A larger mail in a mailbox is skipped (with a reason); the rest of the box is read."""
MAX_UNZIPPED_BYTES = 300 * 1024 * 1024
MAX_ZIP_RATIO = 200
"""A .docx expanding past these is treated as a zip bomb."""
MAX_PDF_PAGES = 3000
MAX_TEXT_CHARS = 20_000_000
"""The most text one file may hold (PDF text; .txt/.md files by size)."""


@dataclass
class Skipped:
    """A mail in a mailbox that was not read (the rest of the box still is)."""

    reason: str


def read_file(path: Path, start: int = 0) -> Iterator[tuple[int, SourceDoc | Skipped, int]]:
    """The documents of one file as a stream: (index, document, bytes of the file read by
    then, for progress), from document ``start`` on (those before are not even parsed: a
    resumed ingest). A mailbox is read mail by mail in bounded memory; other files are one
    document. Raises :class:`ParseError` (before the first document) for a file that
    cannot be read at all."""
    if path.suffix.lower() != ".mbox":
        docs = parse_file(path) if start < 1 else []
        yield from ((i, doc, path.stat().st_size) for i, doc in enumerate(docs))
        return
    size = path.stat().st_size
    if size > MAX_MBOX_BYTES:
        raise ParseError(f"too large ({size / 1e9:.1f} GB; the limit for a mailbox is "
                         f"{MAX_MBOX_BYTES / 1e9:.0f} GB): split it")
    with path.open("rb") as f:
        head = f.read(8192)
        if _binary(head):
            raise ParseError("not a mailbox: binary data")
        if not (head.startswith(b"From ") or b"\nFrom " in head):
            raise ParseError("no mails in it (an mbox starts each mail with a 'From ' line)")
        f.seek(0)
        for i, (data, end) in enumerate(_mbox_messages(f)):
            if i < start:
                continue
            if data is None:
                yield i, Skipped(f"a mail over {MAX_MAIL_BYTES // 2**20} MB"), end
                continue
            try:
                yield i, _from_email(_read_email(data), f"{path_text(path)}#{i}"), end
            except Exception as exc:  # one broken mail never stops the box
                log.debug("mail %d of %s unreadable", i, path, exc_info=True)
                yield i, Skipped(f"unreadable mail ({_short(exc)})"), end


def _mbox_messages(f: IO[bytes]) -> Iterator[tuple[bytes | None, int]]:
    """The raw messages of an mbox (``From `` separator lines, as :mod:`mailbox` splits
    them), each with the file offset after it; None for a message over the size limit.
    Lines are read in bounded pieces, so a file without newlines costs no more memory."""
    parts: list[bytes] = []
    held = 0
    started = False
    at_line_start = True
    while True:
        line = f.readline(1 << 20)
        if not line:
            break
        if at_line_start and line.startswith(b"From "):
            if started:
                if parts and parts[-1] in (b"\n", b"\r\n"):  # the separator's blank line
                    parts.pop()
                yield (b"".join(parts) if held <= MAX_MAIL_BYTES else None), f.tell() - len(line)
            parts, held, started = [], 0, True
        elif started:
            held += len(line)
            if held <= MAX_MAIL_BYTES:
                parts.append(line)
        at_line_start = line.endswith(b"\n")
    if started:
        yield (b"".join(parts) if held <= MAX_MAIL_BYTES else None), f.tell()


def parse_file(path: Path) -> list[SourceDoc]:
    """All documents of one file (a mailbox's mails, else one document)."""
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if suffix == ".mbox":
        docs = [d for _, d, _ in read_file(path) if isinstance(d, SourceDoc)]
        if not docs:
            raise ParseError("no readable mails in it")
        return docs
    if size > MAX_FILE_BYTES:
        raise ParseError(f"too large ({size / 1e6:.0f} MB; the limit is "
                         f"{MAX_FILE_BYTES / 1e6:.0f} MB)")
    try:
        if suffix == ".eml":
            data = path.read_bytes()
            if _binary(data):
                raise ParseError("not a mail: binary data")
            return [_from_email(_read_email(data), path_text(path))]
        if suffix in (".txt", ".md"):
            if size > MAX_TEXT_CHARS:  # at least as many bytes as characters
                raise ParseError(f"too large for a text file ({size / 1e6:.0f} MB; the limit "
                                 f"is {MAX_TEXT_CHARS / 1e6:.0f} MB)")
            data = path.read_bytes()
            if _binary(data):
                raise ParseError("not text: binary data")
            return [SourceDoc(decode_bytes(data), False, path_text(path),
                              subject=path_text(path.stem))]
        if suffix == ".msg":
            return [_parse_msg(path)]
        if suffix == ".pdf":
            return [_parse_pdf(path)]
        if suffix == ".docx":
            return [_parse_docx(path)]
    except ParseError:
        raise
    except Exception as exc:  # a library's own error on a broken file: report and skip
        log.debug("reading %s failed", path, exc_info=True)
        raise ParseError(f"damaged, or not really {KIND_NAMES.get(suffix, suffix)} "
                         f"({_short(exc)})") from exc
    raise ParseError(f"unsupported file type {suffix!r}")


KIND_NAMES = {".eml": "a mail (.eml)", ".mbox": "a mailbox (.mbox)",
              ".msg": "an Outlook message (.msg)", ".pdf": "a PDF",
              ".docx": "a Word document (.docx)", ".txt": "a text file", ".md": "a text file"}


def _short(exc: Exception) -> str:
    """A library's complaint in a few plain words, for the person: no class names."""
    text = " ".join(str(exc).split()).strip("'\"")
    return (text[:80] + "…" if len(text) > 80 else text) or "it could not be read"


def _binary(data: bytes) -> bool:
    """NUL bytes, or mostly control bytes, in the first 8 KB: not a text file."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bool(head) and control / len(head) > 0.1


def _check_zip(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except zipfile.BadZipFile as exc:
        raise ParseError(f"not a valid .docx (zip): {exc}") from exc
    unpacked = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if unpacked > MAX_UNZIPPED_BYTES or unpacked / packed > MAX_ZIP_RATIO:
        raise ParseError(f"refused: unpacks to {unpacked / 1e6:.0f} MB from "
                         f"{packed / 1e6:.1f} MB (a zip bomb?)")


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode with the declared charset, else UTF-8, else Windows-1252 (never fails)."""
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return data.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def html_to_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    text = soup.get_text("\n")
    return re.sub(r"\n\s*\n\s*\n+", "\n\n", text)


# -- mail ---------------------------------------------------------------------------------

def _read_email(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError):  # malformed header the parser cannot model
        raw = msg.get_all(name, failobj=[])
        value = raw[0] if raw else None
    if value is None:
        return ""
    text, most = str(value), RECIPIENTS_CHARS * 4  # what is kept of any header, and more
    if len(text) > most:  # (the newest ids of References are at its end)
        text = text[-most:] if name == "References" else text[:most]
    if "\ufffd" in text:  # raw 8-bit bytes in the header: read them as the body's charset
        raw_value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
        if any("\udc80" <= c <= "\udcff" for c in raw_value):
            data = raw_value.encode("ascii", "surrogateescape")
            text = decode_bytes(data, msg.get_content_charset())
    return " ".join(text.split())


def _body(msg: EmailMessage) -> tuple[str, bool]:
    """The text of the mail's body part (plain preferred, else HTML) and whether it was HTML."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return "", False
    is_html = part.get_content_type() == "text/html"
    try:
        text = part.get_content()
    except (LookupError, UnicodeError, AssertionError):  # unknown or lying charset
        payload = part.get_payload(decode=True)
        text = decode_bytes(payload if isinstance(payload, bytes) else b"",
                            part.get_content_charset())
    if not isinstance(text, str):
        text = decode_bytes(bytes(text), part.get_content_charset())
    if any(type(d).__name__.startswith("InvalidBase64") for d in part.defects) and (
            _garbled(text)):
        return "", is_html  # a body that is not base64 though it says so: no text in it
    return (html_to_text(text) if is_html else text), is_html


def _garbled(text: str) -> bool:
    """Mostly not text: replacement characters and control characters."""
    bad = sum(1 for c in text if c == "\ufffd" or (not c.isprintable() and c not in "\n\r\t"))
    return bad > 0.1 * max(1, len(text))


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        d = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _from_email(msg: EmailMessage, source: str) -> SourceDoc:
    text, is_html = _body(msg)
    return SourceDoc(
        text=text,
        is_mail=True,
        source=source,
        html=is_html,
        message_id=_header(msg, "Message-ID"),
        subject=_header(msg, "Subject"),
        sender=_header(msg, "From"),
        recipients=", ".join(filter(None, (_header(msg, "To"), _header(msg, "Cc")))),
        date=_date(_header(msg, "Date")),
        in_reply_to=_header(msg, "In-Reply-To"),
        references=_header(msg, "References").split(),
    )


def _parse_msg(path: Path) -> SourceDoc:
    import extract_msg

    msg: Any = extract_msg.openMsg(str(path))
    try:
        text, is_html = msg.body or "", False
        if not text.strip() and msg.htmlBody:
            raw = msg.htmlBody
            text = html_to_text(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
            is_html = True
        date = msg.date if isinstance(msg.date, datetime) else _date(str(msg.date or ""))
        if date is not None and date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        return SourceDoc(
            text=text.replace("\r\n", "\n"),
            is_mail=True,
            source=path_text(path),
            html=is_html,
            message_id=(msg.messageId or "").strip(),
            subject=msg.subject or "",
            sender=msg.sender or "",
            recipients=", ".join(filter(None, (msg.to, msg.cc))),
            date=date,
        )
    finally:
        msg.close()


# -- documents ----------------------------------------------------------------------------

def _parse_pdf(path: Path) -> SourceDoc:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    if reader.is_encrypted and not reader.decrypt(""):
        raise ParseError("encrypted PDF (a password is needed)")
    if len(reader.pages) > MAX_PDF_PAGES:
        raise ParseError(f"too many pages ({len(reader.pages)}; the limit is {MAX_PDF_PAGES})")
    pages: list[str] = []
    chars = 0
    for page in reader.pages:
        pages.append((page.extract_text() or "").strip())
        chars += len(pages[-1])
        if chars > MAX_TEXT_CHARS:
            raise ParseError(f"more than {MAX_TEXT_CHARS // 1_000_000} million characters of "
                             "text; split the file")
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise ParseError("no text layer (scanned or image-only PDF)")
    title = ""
    if reader.metadata is not None and reader.metadata.title:
        title = _title(str(reader.metadata.title))
    return SourceDoc(text, False, path_text(path), subject=title or path_text(path.stem))


def _parse_docx(path: Path) -> SourceDoc:
    import docx

    _check_zip(path)
    try:
        document = docx.Document(str(path))
    except KeyError as exc:  # python-docx finds none of the transitional relationships
        if "relationship" in str(exc):
            raise ParseError("a Strict Open XML document, which cannot be read: save it in "
                             "Word as a standard .docx and ingest again") from exc
        raise
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            cells = list(dict.fromkeys(c.text.strip() for c in row.cells))
            parts.append(" | ".join(c for c in cells if c))
    title = _title(document.core_properties.title or "") or path.stem
    return SourceDoc("\n".join(parts), False, path_text(path), subject=title)


_PLACEHOLDER_TITLE = re.compile(r"^\W*(anonymous|untitled|no title|none|title|document\d*)\W*$",
                                re.IGNORECASE)


def _title(title: str) -> str:
    """A document's own title, or "" for a placeholder ("(anonymous)", "Untitled")."""
    title = " ".join(title.split())
    return "" if _PLACEHOLDER_TITLE.match(title) else title
