"""Native Discord voice messages (message flag 1<<13, OGG Opus with duration and waveform).

discord.py 2.7 can receive voice messages but has no API to send one, so the attachment's
``duration_secs`` and ``waveform`` are added to its ``payload_json`` entry and the message goes
through discord.py's own HTTP layer. If Discord refuses it, the same audio goes as a plain
attachment, so the user gets the reply either way.
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import discord

from engine.api import VoiceNote

log = logging.getLogger(__name__)

VOICE_FLAG = 1 << 13
FILENAME = "voice-message.ogg"


class VoiceFile(discord.File):
    """A discord.File whose attachment entry carries a voice message's duration and
    waveform."""

    def __init__(self, note: VoiceNote) -> None:
        super().__init__(io.BytesIO(note.ogg), filename=FILENAME)
        self.duration_secs = round(note.duration_s, 2)
        self.waveform = base64.b64encode(note.waveform[:256]).decode()

    def to_dict(self, index: int) -> Any:
        data = super().to_dict(index)
        data.update(duration_secs=self.duration_secs, waveform=self.waveform)
        return data


async def send_voice_message(http: discord.http.HTTPClient, channel_id: int, note: VoiceNote,
                             *, caption: str = "") -> dict[str, Any]:
    """Send ``note`` as a voice message; fall back to an audio attachment with ``caption``
    if Discord refuses the voice flag. Returns the created message payload."""
    voice = VoiceFile(note)
    flags = discord.MessageFlags._from_value(VOICE_FLAG)
    with discord.http.handle_message_parameters(files=[voice], flags=flags) as params:
        try:
            return dict(await http.send_message(channel_id, params=params))
        except discord.HTTPException as exc:
            if exc.status != 400:
                raise
            log.warning("Discord refused a voice message (%s); sending an audio file", exc)
    plain = discord.File(io.BytesIO(note.ogg), filename="voice-note.ogg")
    with discord.http.handle_message_parameters(content=caption or None,
                                                files=[plain]) as params:
        return dict(await http.send_message(channel_id, params=params))
