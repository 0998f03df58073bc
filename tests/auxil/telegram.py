"""The Telegram test seam: a BaseRequest that records Bot API calls and answers them the
way the Bot API does, so everything above the wire is the real python-telegram-bot."""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

from telegram.request import BaseRequest, RequestData

from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "telegram"
BOT = {"id": 999000111, "is_bot": True, "first_name": "Doppel", "username": "doppel_bot",
       "can_join_groups": True, "can_read_all_group_messages": False,
       "supports_inline_queries": False}


def fixture(name: str, *, text: str | None = None, **message: Any) -> dict[str, Any]:
    """A real Update payload from shared/fixtures, optionally with another text (a leading
    /command gets its bot_command entity) or other message fields."""
    data: dict[str, Any] = copy.deepcopy(json.loads((FIXTURES / name).read_text()))
    data.setdefault("update_id", 1)
    msg = data.get("message")
    if msg is not None:
        if text is not None:
            msg["text"] = text
            cmd = text.split(" ", 1)[0]
            msg["entities"] = ([{"offset": 0, "length": len(cmd), "type": "bot_command"}]
                               if text.startswith("/") else [])
        msg.update(message)
    return data


class RecordingRequest(BaseRequest):
    def __init__(self, download: bytes = b"") -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.download = download
        self._ids = itertools.count(5000)
        self.owners: set[int] = set()
        """Users getChatMember says own the chat (everyone else is a plain member)."""

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    def named(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Any = None, write_timeout: Any = None,
                         connect_timeout: Any = None,
                         pool_timeout: Any = None) -> tuple[int, bytes]:
        if "/file/bot" in url:
            return 200, self.download
        name = url.rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(request_data.parameters) if request_data else {}
        if request_data is not None and request_data.multipart_data:
            params["_files"] = {k: v[1] for k, v in request_data.multipart_data.items()}
        self.calls.append((name, params))
        return 200, json.dumps({"ok": True, "result": self._result(name, params)}).encode()

    def _result(self, name: str, params: dict[str, Any]) -> Any:
        if name == "getMe":
            return BOT
        if name == "getUpdates":
            return []
        if name == "getChatMember":
            uid = int(params["user_id"])
            user = {"id": uid, "is_bot": False, "first_name": f"user{uid}"}
            return ({"status": "creator", "user": user, "is_anonymous": False}
                    if uid in self.owners else {"status": "member", "user": user})
        if name == "getFile":
            return {"file_id": params.get("file_id", "f"), "file_unique_id": "u1",
                    "file_size": len(self.download), "file_path": "voice/file_1.oga"}
        return sent_message(name, params, self._ids) or True


PHOTO = [{"file_id": "p1", "file_unique_id": "p1", "width": 512, "height": 512}]


def sent_message(method: str, params: dict[str, Any], ids: Iterator[int]) -> Any:
    """The Message the Bot API answers to sendMessage, editMessageText, sendVoice and
    sendPhoto, the Messages of a sendMediaGroup (None for other methods)."""
    if method == "sendMediaGroup":
        album = params["media"]
        album = json.loads(album) if isinstance(album, str) else album
        return [{**sent_message("sendPhoto", {"chat_id": params["chat_id"],
                                              **({"caption": m["caption"]}
                                                 if "caption" in m else {})}, ids),
                 "media_group_id": "album-1"} for m in album]
    if method not in ("sendMessage", "editMessageText", "sendVoice", "sendPhoto"):
        return None
    chat_id = int(params.get("chat_id", 1))
    msg: dict[str, Any] = {
        "message_id": int(params.get("message_id") or next(ids)),
        "date": int(time.time()), "from": BOT,
        "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
    }
    if "text" in params:
        msg["text"] = params["text"]
    if method == "sendPhoto":
        msg["photo"] = PHOTO
        if "caption" in params:
            msg["caption"] = params["caption"]
    if method == "sendVoice":
        msg["voice"] = {"file_id": "v1", "file_unique_id": "v1",
                        "duration": int(params.get("duration", 1))}
    return msg
