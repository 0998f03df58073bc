"""A reply is a message, not a letter: what a model trained on a person's mail writes in
the shape of a mail, reshaped.

A persona's fine-tune learns his mail's frame as well as his words: replies open with a
salutation line ("Phillip," to himself; "Jeff," to whoever the mail was for), close with
his signature, and then go on into another mail ("Phillip,\\n\\nYou are a business AI,
and ..."). ``LetterStream`` passes a streamed reply on line by line:

- a salutation line before anything else is left out unless it greets the reader by name
  in writing (a call does not open with "Jeff,"; nor a message to Ann);
- a sign-off (the persona's name alone on a line, or "Thanks," / "Regards," ... alone) ends
  the reply: in writing it is kept, spoken it is not; whatever follows is left out;
- a salutation line after the reply has begun starts another mail: the reply ends there.

A line is held only while it may still become one of these ("Phil", "Thanks"); other lines
stream on as they come.
"""

from __future__ import annotations

import regex

_CLOSING = (r"thanks|thank you|many thanks|regards|best regards|kind regards|warm regards|"
            r"best|all the best|sincerely|yours|yours truly|cheers|take care|talk soon")
_NAME = r"[A-Z][a-z]+(?: [A-Z][a-z]+)?"
_SALUTATION = regex.compile(
    r"[ \t]*(?:(?i:dear|hi|hello|hey|good (?:morning|afternoon|evening))"
    rf"(?:[ \t]+(?P<who>{_NAME}|(?i:all|everyone|team|folks|guys)))?|(?P<who>{_NAME}))"
    r"[ \t]*,[ \t]*")
_SIGN_OFF = regex.compile(rf"[ \t]*(?:-+[ \t]*)?(?i:{_CLOSING})[ \t]*[,.!]?[ \t]*")
_SIGNATURE = regex.compile(r"[ \t]*(?:-+[ \t]*)?(?P<name>[A-Z][a-z]+(?: [A-Z]\.)?(?: [A-Z][a-z]+)?)"
                           r"[ \t]*\.?[ \t]*")
_NOT_NAMES = frozenset("yes no sure well okay ok so hmm also thanks great right".split())


class LetterStream:
    """Reshapes a streamed reply: ``feed`` returns what may be shown now, ``close`` the
    rest. ``names``: the words of the persona's names, lower case; ``reader``: the name of
    whom the reply is for, if known; ``spoken``: a reply that is heard (no salutation, no
    signature)."""

    def __init__(self, names: frozenset[str], *, reader: str = "",
                 spoken: bool = False) -> None:
        self.names = names
        self.reader = reader.split()[0].lower() if reader.split() else ""
        self.spoken = spoken
        self.line = ""
        """The current line while it may still be a salutation or a sign-off."""
        self.line_open = False
        """The current line is an ordinary one, its beginning passed on."""
        self.blank = ""
        """Line breaks after the last line passed on: passed on before the next one."""
        self.kept = ""
        """Everything passed on."""
        self.signed = False
        """A closing ("Thanks,") was written: a signature may follow, nothing else."""
        self.ended = False
        """The reply has ended (a signature, another mail): nothing more is kept."""
        self.changed = False
        """Whether anything was left out."""

    def feed(self, text: str) -> str:
        out = []
        for part in regex.split(r"(\n)", text):
            if self.ended:
                self.changed = self.changed or bool(part.strip())
            elif part == "\n":
                out.append(self._end_line())
            elif self.line_open:
                self.kept += part
                out.append(part)
            elif part:
                self.line += part
                if not self._may_be_frame(self.line):
                    line, self.line = self.line, ""
                    out.append(self._open_line(line))
        return "".join(out)

    def close(self) -> str:
        return self._end_line() if self.line and not self.ended else ""

    def _may_be_frame(self, line: str) -> bool:
        return not line.strip() or any(p.fullmatch(line, partial=True)
                                       for p in (_SALUTATION, _SIGN_OFF, _SIGNATURE))

    def _open_line(self, line: str) -> str:
        """``line`` so far is an ordinary one: passed on, and the rest of it as it comes."""
        if self.signed:  # after a closing, only the signature
            self.ended = self.changed = True
            return ""
        out = self.blank + line if self.kept else line.lstrip()
        self.blank, self.line_open = "", True
        self.kept += out
        return out

    def _end_line(self) -> str:
        if self.line_open:
            self.line_open, self.blank = False, "\n"
            return ""
        line, self.line = self.line, ""
        if not line.strip():  # a blank line: kept between lines, never at either end
            self.blank += "\n" if self.kept else ""
            return ""
        out = self._frame_line(line)
        self.line_open = False
        return out

    def _frame_line(self, line: str) -> str:
        """A whole line that may be a salutation, a sign-off or a signature."""
        begun = bool(self.kept.strip())
        signature = _SIGNATURE.fullmatch(line)
        if signature and self._is_persona(signature.group("name")):
            self.ended = True
            return self._sign(line) if begun else self._leave_out()
        if self.signed:
            self.ended = True
            return self._leave_out()
        if _SIGN_OFF.fullmatch(line):
            if begun:
                self.signed = True
                return self._sign(line)
        elif (salutation := _SALUTATION.fullmatch(line)) and not (
                (who := salutation.group("who")) and who.lower() in _NOT_NAMES):
            if begun:  # another mail begins
                self.ended = True
                return self._leave_out()
            if self.spoken or not who or who.split()[0].lower() != self.reader:
                return self._leave_out()
        out = self._open_line(line)
        self.blank = "\n"
        return out

    def _sign(self, line: str) -> str:
        """A sign-off line: kept in writing, never spoken."""
        if self.spoken:
            return self._leave_out()
        out = (self.blank or "\n") + line.strip()
        self.blank = "\n"
        self.kept += out
        return out

    def _leave_out(self) -> str:
        self.changed = True
        return ""

    def _is_persona(self, name: str) -> bool:
        """``name`` is the persona's (its first name, full name, with an initial)."""
        words = [w.lower().rstrip(".") for w in name.split()]
        return any(w in self.names for w in words) and all(
            w in self.names or len(w) == 1 for w in words)
