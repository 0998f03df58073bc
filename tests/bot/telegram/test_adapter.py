"""The Telegram adapter fed real Update payloads through Application.process_update, with
the Bot API replaced at PTB's BaseRequest seam (tests/auxil/telegram.py)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from telegram import Update

from bot.actions import OUTDATED
from bot.telegram.adapter import TelegramAdapter
from bot.telegram.settings import TelegramConfig
from bot.telegram.stream import LIMIT
from engine.engine import Engine, UserRef
from engine.storage.models import (
    Conversation,
    CustomGenre,
    Favourite,
    Message,
    Rating,
    Story,
    User,
    UserSetting,
)
from engine.stories.options import StoryRequest
from engine.vision.service import NO_VISION
from tests.auxil.eventually import eventually
from tests.auxil.fake_llm import FakeLLM, introduced
from tests.auxil.llm_api import SEEN, FakeLLMServer
from tests.auxil.speech import words_heard
from tests.auxil.telegram import RecordingRequest, fixture
from tests.conftest import MakeConfig
from tests.engine.test_photo_story import STORY as PHOTO_STORY
from tests.engine.test_photo_story import photo


@pytest.fixture
def wire() -> RecordingRequest:
    return RecordingRequest()


@pytest.fixture
async def tg(engine: Engine, wire: RecordingRequest) -> AsyncIterator[TelegramAdapter]:
    adapter = TelegramAdapter(engine, TelegramConfig(edit_interval_s=0.3), "123:abc",
                              request=wire, updates_request=wire, rate_limit=False)
    async with adapter.app:
        yield adapter


async def feed(tg: TelegramAdapter, payload: dict[str, Any]) -> None:
    await tg.app.process_update(Update.de_json(payload, tg.app.bot))


def sent_texts(wire: RecordingRequest) -> list[str]:
    return [p["text"] for p in wire.named("sendMessage")]


async def test_private_text_is_answered_and_stored(tg: TelegramAdapter, wire: RecordingRequest,
                                                   engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("Mario, the rent roll came in. Phillip")
    await feed(tg, fixture("private_text.json"))
    assert wire.named("sendChatAction")[0]["action"] == "typing"
    final = (wire.named("editMessageText") or wire.named("sendMessage"))[-1]
    disclosure, text = final["text"].split("\n\n", 1)
    assert text == "Mario, the rent roll came in. Phillip"
    assert disclosure.startswith("🤖 I'm an AI persona of Phillip Allen")
    keyboard = final["reply_markup"]["inline_keyboard"][0]
    history = await engine.history(UserRef("telegram", "12345678"))
    assert [m.content for m in history] == ["aaaaaaaaaa",
                                            "Mario, the rent roll came in. Phillip"]
    reply_id = history[1].id
    assert [b["callback_data"] for b in keyboard] == [
        f"favmsg|{reply_id}", "regen", "say", f"good|reply:{reply_id}", f"bad|reply:{reply_id}"]
    press = fixture("callback_query_inline_keyboard.json")
    press["callback_query"]["data"] = f"favmsg|{reply_id}"
    press["callback_query"]["from"]["id"] = 12345678
    await feed(tg, press)
    assert wire.named("answerCallbackQuery")[-1]["text"] == "⭐ Saved to your favourites."
    async with engine.db.session() as s:
        assert [f.message_id for f in (await s.scalars(select(Favourite))).all()] == [reply_id]
    stranger = fixture("callback_query_inline_keyboard.json")  # user 222222222
    stranger["callback_query"]["data"] = f"favmsg|{reply_id}"
    await feed(tg, stranger)
    assert sent_texts(wire)[-1] == "I can't find that reply any more."

    # 👎, then changed to 👍: one rating, with what was asked and what was written.
    for vote in ("bad", "good"):
        press["callback_query"]["data"] = f"{vote}|reply:{reply_id}"
        await feed(tg, press)
    assert wire.named("answerCallbackQuery")[-1]["text"] == "Thanks: noted."
    stranger["callback_query"]["data"] = f"good|reply:{reply_id}"
    await feed(tg, stranger)  # not theirs to rate
    assert sent_texts(wire)[-1] == "That message or story is no longer there to rate."
    async with engine.db.session() as s:
        [rating] = (await s.scalars(select(Rating))).all()
    assert (rating.kind, rating.good, rating.persona, rating.prompt, rating.output) == (
        "reply", True, "allen", "aaaaaaaaaa", "Mario, the rent roll came in. Phillip")


async def test_long_reply_is_split_at_4096(make_config: MakeConfig,
                                           wire: RecordingRequest) -> None:
    sentence = "This sentence is part of a very long answer about gas storage. "
    llm = FakeLLM([sentence * 150], n_ctx=16384)  # ~9,450 characters
    engine = Engine(make_config(llm={"max_tokens": 4000}), llm=llm)
    await engine.start()
    tg = TelegramAdapter(engine, TelegramConfig(edit_interval_s=0.3), "123:abc",
                         request=wire, updates_request=wire, rate_limit=False)
    async with tg.app:
        await introduced(engine, UserRef("telegram", "12345678"))
        await feed(tg, fixture("private_text.json"))
    await engine.stop()
    parts = [p["text"] for name, p in wire.calls if name in ("sendMessage", "editMessageText")]
    final = parts[-3:]
    assert all(len(p) <= LIMIT for p in parts)
    assert "".join(final).replace(" ", "") == (sentence * 150).replace(" ", "")
    assert all(p.endswith(".") for p in final)  # cut on sentence bounds


async def test_start_discloses_the_ai_persona(tg: TelegramAdapter, wire: RecordingRequest) -> None:
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/start"))
    text = sent_texts(wire)[-1]
    assert "I'm an AI persona of Phillip Allen, not the real person" in text
    assert "/story - Write a children's story" in text


async def test_group_story_command_then_favourite(tg: TelegramAdapter, wire: RecordingRequest,
                                                  engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("Tiny Turtle\nTilly swam. She was proud of herself.")
    await feed(tg, fixture("supergroup_command_reply_in_thread.json",
                           text="/story genre=animals age=3-5 a turtle who learns to swim"))
    async with engine.db.session() as s:
        story = (await s.scalars(select(Story))).one()
    assert (story.genre, story.age_group, story.chat_key) == ("animals", "3-5",
                                                              "tg:-1001293752024")
    final = (wire.named("editMessageText") or wire.named("sendMessage"))[-1]
    assert final["text"] == "Tiny Turtle\n\nTilly swam. She was proud of herself."
    buttons = [b["callback_data"] for b in final["reply_markup"]["inline_keyboard"][0]]
    assert buttons == [f"fav|{story.id}", f"narrate|{story.id}", "ideas|animals|en|3-5",
                       f"good|story:{story.id}", f"bad|story:{story.id}"]
    [cover] = wire.named("sendPhoto")  # no image model: the neutral cover card, after it
    assert cover["caption"] == "Tiny Turtle" and cover["message_thread_id"] == 134545
    assert Image.open(io.BytesIO(cover["_files"]["photo"])).size == (512, 512)

    press = fixture("callback_query_inline_keyboard.json")
    press["callback_query"]["data"] = f"fav|{story.id}"
    press["callback_query"]["from"]["id"] = 5964236329  # the user who asked for it
    await feed(tg, press)
    assert wire.named("answerCallbackQuery")
    favs = await engine.stories.favourites(UserRef("telegram", "5964236329"))
    assert [r.id for r in favs] == [story.id]


async def test_a_drawn_story_arrives_with_its_pictures_as_an_album(
        make_config: MakeConfig, tiny_diffusion: Path, fake_llm: FakeLLM,
        wire: RecordingRequest) -> None:
    engine = Engine(make_config(images={"model_dir": str(tiny_diffusion), "size": 64,
                                        "steps": 1, "chapters": 2}), llm=fake_llm)
    await engine.start()
    try:
        tg = TelegramAdapter(engine, TelegramConfig(edit_interval_s=0.3), "123:abc",
                             request=wire, updates_request=wire, rate_limit=False)
        async with tg.app:
            fake_llm.replies.append("Tiny Turtle\nTilly could not swim, so she watched the "
                                    "ducks every day.\n\nOne morning she paddled after them "
                                    "and swam across the whole pond.")
            await feed(tg, fixture("supergroup_command_reply_in_thread.json",
                                   text="/story genre=animals chars=Tilly a turtle"))
    finally:
        await engine.stop()
    [album] = wire.named("sendMediaGroup")
    media = album["media"]
    assert [m["type"] for m in media] == ["photo"] * 3
    assert [m.get("caption", "")[:12] for m in media] == ["Tiny Turtle", "Tilly could ",
                                                          "One morning "]
    for m in media:
        name = m["media"].removeprefix("attach://")
        assert Image.open(io.BytesIO(album["_files"][name])).size == (64, 64)
    final = wire.named("editMessageText")[-1]  # the text came first, then the album
    assert final["text"].startswith("Tiny Turtle") and wire.calls.index(
        ("sendMediaGroup", album)) > wire.calls.index(("editMessageText", final))


async def test_a_photo_captioned_story_is_about_the_photo(
        make_config: MakeConfig, fake_llm: FakeLLM) -> None:
    with FakeLLMServer() as vision:
        engine = Engine(make_config(vision={"backend": "openai", "api_base": vision.base}),
                        llm=fake_llm)
        await engine.start()
        wire = RecordingRequest(download=photo())
        try:
            tg = TelegramAdapter(engine, TelegramConfig(edit_interval_s=0.3), "123:abc",
                                 request=wire, updates_request=wire, rate_limit=False)
            async with tg.app:
                fake_llm.replies.append(PHOTO_STORY)
                await feed(tg, fixture("photo_with_caption.json",
                                       caption="/story genre=animals age=3-5"))
        finally:
            await engine.stop()
        assert [p["file_id"] for p in wire.named("getFile")] == ["SAAS"]  # the largest size
        assert len(vision.photos) == 1
    asked = fake_llm.prompts[-1][-1].content
    assert f"A story about what this photo shows: {SEEN}" in asked, asked
    final = wire.named("editMessageText")[-1]
    assert final["text"].startswith("Biscuit and the Red Sofa")


async def test_a_photo_story_without_a_vision_model_says_what_it_needs(
        tg: TelegramAdapter, wire: RecordingRequest) -> None:
    wire.download = photo()
    await feed(tg, fixture("photo_with_caption.json", caption="/story"))
    assert sent_texts(wire)[-1] == NO_VISION
    reply = fixture("private_command_bot_command_entity.json", text="/story",
                    reply_to_message=fixture("photo_with_caption.json")["message"])
    await feed(tg, reply)  # /story in reply to a photo: the same
    assert sent_texts(wire)[-1] == NO_VISION


async def test_story_flow_with_keyboards(tg: TelegramAdapter, wire: RecordingRequest,
                                         engine: Engine, fake_llm: FakeLLM) -> None:
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/story"))
    genres = wire.named("sendMessage")[-1]["reply_markup"]["inline_keyboard"]
    assert genres[0][0]["callback_data"] == "sf|adventure"
    fake_llm.replies.append("चाँद की नींद\nचाँद ने जम्हाई ली और सो गया।")  # Hindi, as asked
    for data in ("sf|bedtime", "sf|bedtime|3-5", "sf|bedtime|3-5|hi",
                 "sf|bedtime|3-5|hi|short"):
        press = fixture("callback_query_inline_keyboard.json")
        press["callback_query"]["data"] = data
        await feed(tg, press)
    steps = [p["text"] for p in wire.named("editMessageText")[:3]]
    assert steps == ["Which age group?", "Which language?", "How long?"]
    story = (await engine.stories.history(UserRef("telegram", "222222222")))[0][1][0]
    assert (story.genre, story.age_group, story.language) == ("bedtime", "3-5", "hi")


async def test_voice_note_in_is_transcribed_and_answered_with_voice(
    engine: Engine, fake_llm: FakeLLM
) -> None:
    spoken = "Please tell me about the rent roll for the apartments."
    note = await engine.voice.speak(spoken)
    wire = RecordingRequest(download=note.ogg)
    adapter = TelegramAdapter(engine, TelegramConfig(edit_interval_s=0.3), "123:abc",
                              request=wire, updates_request=wire, rate_limit=False)
    fake_llm.replies.append("The rent roll arrived on Friday. I will send it to you.")
    async with adapter.app:
        await feed(adapter, fixture("voice_message.json"))
    assert wire.named("getFile")
    said = sent_texts(wire)[0]
    assert said.startswith("🎙 you said: ") and words_heard(spoken, said) >= 0.8
    voice = wire.named("sendVoice")[-1]
    assert voice["duration"] >= 2 and voice["caption"] == "AI-generated voice"
    assert voice["_files"]["voice"][:4] == b"OggS"


async def test_oversized_audio_and_broken_updates_get_clear_replies(
    tg: TelegramAdapter, wire: RecordingRequest
) -> None:
    big = fixture("audio_message.json")
    big["message"]["audio"]["file_size"] = 25 * 1024 * 1024
    await feed(tg, big)
    assert "over 20 MB" in sent_texts(wire)[-1]
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/voice loud"))
    assert sent_texts(wire)[-1] == "Reply mode is text, voice or both."
    await feed(tg, fixture("edited_message_with_reply.json"))
    assert sent_texts(wire)[-1].startswith("I only see new messages")
    before = len(wire.calls)
    await feed(tg, fixture("unknown_update_kind.json"))
    assert len(wire.calls) == before  # ignored, and the application is still alive


async def test_unexpected_errors_are_logged_and_answered(tg: TelegramAdapter,
                                                         wire: RecordingRequest,
                                                         engine: Engine) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    engine.stories.favourites = broken  # type: ignore[method-assign, assignment]
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/favourites"))
    assert sent_texts(wire)[-1] == "Sorry, something went wrong on my side. Please try again."


async def test_lifecycle_registers_commands_and_polls(engine: Engine,
                                                      wire: RecordingRequest) -> None:
    adapter = TelegramAdapter(engine, TelegramConfig(), "123:abc", request=wire,
                              updates_request=wire, rate_limit=False)
    await adapter.start()
    await adapter.stop()
    commands = [c["command"] for c in wire.named("setMyCommands")[0]["commands"]]
    assert commands[:2] == ["start", "story"] and "cancel" in commands
    assert wire.named("getUpdates") and wire.named("deleteWebhook")
    await adapter.wait_closed()


async def test_saved_prompts_and_genres_through_commands(tg: TelegramAdapter,
                                                         wire: RecordingRequest,
                                                         engine: Engine,
                                                         fake_llm: FakeLLM) -> None:
    for text in ("/genres add space_pirates kind pirates",
                 "/prompts save bunny genre=bedtime age=3-5 counting stars", "/prompts"):
        await feed(tg, fixture("private_command_bot_command_entity.json", text=text))
    assert sent_texts(wire)[:3] == [
        "Added the genre 'space pirates'.", "Saved. Use it with /story @bunny.",
        "@bunny: bedtime, ages 3-5, en, short: counting stars"]
    fake_llm.replies.append("Star Count\nBun counted the stars and fell asleep.")
    await feed(tg, fixture("private_command_bot_command_entity.json",
                           text="/story @bunny length=medium"))
    story = (await engine.stories.history(UserRef("telegram", "10081232")))[0][1][0]
    assert (story.genre, story.age_group, story.length, story.prompt) == (
        "bedtime", "3-5", "medium", "counting stars")


async def test_forget_asks_then_deletes_everything(tg: TelegramAdapter, wire: RecordingRequest,
                                                   engine: Engine, fake_llm: FakeLLM) -> None:
    me, other = UserRef("telegram", "222222222"), UserRef("telegram", "1")
    fake_llm.replies.extend(["Hello Mario.", "Sun\nThe sun rose.", "Other\nA tale."])
    await (await engine.chat(me, "hi")).result()
    story = await (await engine.stories.create(me, StoryRequest())).result()
    await engine.stories.favourite(me, story.id)
    await engine.stories.add_genre(me, "space pirates")
    await engine.set_reply_mode(me, "both")
    await (await engine.stories.create(other, StoryRequest())).result()

    await feed(tg, fixture("private_command_bot_command_entity.json", text="/forget",
                           **{"from": {"id": 222222222, "is_bot": False, "first_name": "M"}}))
    assert "Are you sure?" in sent_texts(wire)[-1]
    press = fixture("callback_query_inline_keyboard.json")
    press["callback_query"]["data"] = "forget|yes"
    await feed(tg, press)
    assert wire.named("editMessageText")[-1]["text"].startswith("Done: I have forgotten")
    async with engine.db.session() as s:
        for model in (Conversation, Message, Favourite, CustomGenre, UserSetting):
            assert (await s.scalars(select(model))).all() == [], model
        users = (await s.scalars(select(User))).all()
        stories = (await s.scalars(select(Story))).all()
    assert [u.platform_user_id for u in users] == ["1"]  # the other user is untouched
    assert [st.user_id for st in stories] == [users[0].id]
    assert await engine.reply_mode(me) == "text"


async def test_voice_cloning_without_xtts_says_what_it_needs(tg: TelegramAdapter,
                                                              wire: RecordingRequest) -> None:
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/voice help"))
    assert "/voice clone NAME" in sent_texts(wire)[-1]
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/voice list"))
    assert sent_texts(wire)[-1] == "Phillip Allen has no cloned voice."
    await feed(tg, fixture("private_command_bot_command_entity.json",
                           text="/voice clone studio"))
    assert "needs the XTTS-v2 voice model" in sent_texts(wire)[-1]
    await feed(tg, fixture("private_command_bot_command_entity.json",
                           text="/voice consent Phillip Allen"))
    assert "no voice being cloned" in sent_texts(wire)[-1]


async def test_export_sends_the_users_data_as_a_document(tg: TelegramAdapter,
                                                         wire: RecordingRequest,
                                                         engine: Engine) -> None:
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/export"))
    assert wire.named("sendDocument") == []  # nothing stored yet: said so, no empty zip
    assert sent_texts(wire)[-1] == "Nothing is stored about you yet."
    await engine.set_reply_mode(UserRef("telegram", "10081232"), "both")  # the sender
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/export"))
    [doc] = wire.named("sendDocument")
    assert doc["_files"]["document"][:2] == b"PK"
    assert doc["caption"] == "Everything I store about you."


@pytest.mark.parametrize("name", ["sticker_message.json", "photo_with_caption.json",
                                  "location_message.json", "document_message.json"])
async def test_every_kind_of_message_gets_an_answer(tg: TelegramAdapter, wire: RecordingRequest,
                                                    name: str) -> None:
    await feed(tg, fixture(name))
    [said] = sent_texts(wire)
    assert said.startswith("I can't read ") and "/help" in said


async def test_unknown_commands_and_bad_button_data_get_one_line(
        tg: TelegramAdapter, wire: RecordingRequest) -> None:
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/frobnicate now"))
    assert sent_texts(wire)[-1].startswith("I don't know /frobnicate.")
    for data in ("fav|notanumber", "sf|a|b|c|d|e", "nonsense", ""):
        press = fixture("callback_query_inline_keyboard.json")
        press["callback_query"]["data"] = data
        await feed(tg, press)
    answers = [c.get("text") for c in wire.named("answerCallbackQuery")]
    said = sent_texts(wire)
    assert "That button no longer works." in said  # fav|notanumber
    assert "That button no longer works. Try /story again." in said  # a broken story flow
    assert answers.count(OUTDATED) == 2  # unknown actions
    assert not any("went wrong" in t for t in said)


async def test_updates_received_before_a_restart_are_handled_or_their_senders_told(
        engine: Engine, wire: RecordingRequest, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("Here I am again, all in one piece.")
    never_started = fixture("private_text.json", text="Are you there?")
    never_started["update_id"] = 41
    cut_off = fixture("private_text.json", text="Tell me about the bridge")
    cut_off["update_id"] = 42
    for update, started in ((never_started, False), (cut_off, True)):
        await engine.inbox.record("telegram", str(update["update_id"]),
                                  payload=json.dumps(update), chat_id="12345678",
                                  user_key="telegram:12345678",
                                  summary=update["message"]["text"])
        if started:
            await engine.inbox.started("telegram", str(update["update_id"]))
    adapter = TelegramAdapter(engine, TelegramConfig(edit_interval_s=0.3), "123:abc",
                              request=wire, updates_request=wire, rate_limit=False)
    await adapter.start()
    try:
        await eventually(lambda: any(p.get("reply_markup") for p in wire.named("sendMessage")
                                     + wire.named("editMessageText")))
        await asyncio.gather(*adapter.processor.running)  # handlers done: inbox rows dropped
    finally:
        await adapter.stop()
    said = sent_texts(wire)
    assert any("restarted before I could answer \u201cTell me about the bridge\u201d" in t
               for t in said)
    final = (wire.named("editMessageText") or wire.named("sendMessage"))[-1]
    assert final["text"].endswith("Here I am again, all in one piece.")
    history = await engine.history(UserRef("telegram", "12345678"))
    assert history[0].content == "Are you there?"
    assert await engine.inbox.unhandled("telegram") == []


async def test_memories_lists_what_they_told_and_forgets_one(tg: TelegramAdapter,
                                                             wire: RecordingRequest) -> None:
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/memories"))
    assert "haven't told Phillip Allen anything" in sent_texts(wire)[-1]
    for text in ("My name is Sam and I live in Leeds.", "I'm allergic to peanuts."):
        await feed(tg, fixture("private_command_bot_command_entity.json", text=text))
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/memories"))
    listed = sent_texts(wire)[-1]
    assert listed.startswith("What you told Phillip Allen about yourself:\n1. Your name is "
                             "Sam. (") and "3. You're allergic to peanuts." in listed
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/memories forget 2"))
    assert sent_texts(wire)[-1] == "Forgotten: You live in Leeds."
    await feed(tg, fixture("private_command_bot_command_entity.json", text="/memories forget x"))
    assert sent_texts(wire)[-1].startswith("Use /memories to list them")


async def test_a_group_remembers_what_was_told_there_for_its_admins(
        tg: TelegramAdapter, wire: RecordingRequest, engine: Engine,
        fake_llm: FakeLLM) -> None:
    teller = UserRef("telegram", "5964236329", "the Cable Guy")
    await introduced(engine, teller)
    await engine.user_memories.learn(teller, "allen", "I'm vegetarian.")  # in private
    fake_llm.replies.append("Noted, and welcome.")
    await feed(tg, fixture("supergroup_command_reply_in_thread.json",
                           text="/ask I live in Leeds and I have two cats."))
    group = "tg:-1001293752024"
    assert [m.slot for m in await engine.user_memories.all(teller, "allen", group)] == [
        "home", "have:cats"]
    await feed(tg, fixture("supergroup_command_reply_in_thread.json", text="/memories"))
    mine = sent_texts(wire)[-1]
    assert "You live in Leeds" in mine and "vegetarian" not in mine
    await feed(tg, fixture("supergroup_command_reply_in_thread.json", text="/memories server"))
    assert sent_texts(wire)[-1] == ("Only this server's admins can see what everyone told "
                                    "me here.")
    wire.owners.add(5964236329)
    await feed(tg, fixture("supergroup_command_reply_in_thread.json", text="/memories server"))
    everyone = sent_texts(wire)[-1]
    assert "1. the Cable Guy: They live in Leeds" in everyone and "vegetarian" not in everyone
    await feed(tg, fixture("supergroup_command_reply_in_thread.json",
                           text="/memories server forget 2"))
    assert sent_texts(wire)[-1] == "Forgotten (the Cable Guy): They have two cats."
    assert [m.slot for m in await engine.user_memories.all(teller, "allen")] == ["diet", "home"]


async def test_achievements_and_the_web_link_in_private(
        tg: TelegramAdapter, wire: RecordingRequest, engine: Engine, fake_llm: FakeLLM) -> None:
    await feed(tg, fixture("private_text.json", text="/achievements"))
    board = sent_texts(wire)[-1]
    assert board.startswith("Stories written: 0") and "⬜ First story" in board
    await feed(tg, fixture("private_text.json", text="/web"))  # no web app in this process
    assert sent_texts(wire)[-1] == "The web app is not running here: its operator turned it off."
    engine.web.serving_at("http://127.0.0.1:8000")  # as the HTTP adapter does when it listens
    await feed(tg, fixture("private_text.json", text="/web"))
    link = sent_texts(wire)[-1].rsplit("\n", 1)[-1]
    assert link.startswith("http://127.0.0.1:8000/login/")
    signed = await engine.web.redeem(link.rsplit("/", 1)[-1])
    assert signed is not None and signed.user.key == "telegram:12345678"
    await feed(tg, fixture("supergroup_command_reply_in_thread.json", text="/web"))
    assert "private chat" in sent_texts(wire)[-1] and "/login/" not in sent_texts(wire)[-1]


def pressed(data: str, user: int = 12345678) -> dict[str, Any]:
    """A real callback query payload for a button carrying ``data``, pressed by ``user``."""
    press = fixture("callback_query_inline_keyboard.json")
    press["callback_query"]["data"] = data
    press["callback_query"]["from"]["id"] = user
    return press


def keys(call: dict[str, Any]) -> list[str]:
    return [b["callback_data"] for row in call["reply_markup"]["inline_keyboard"] for b in row]


async def test_ideas_history_pages_and_read_aloud_through_the_shared_actions(
        tg: TelegramAdapter, wire: RecordingRequest, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("A turtle learns to swim\nA fox finds a friend\nThe moon hides\n"
                            "A robot bakes bread\nThe lost kite")
    await feed(tg, fixture("private_text.json", text="/suggest genre=animals"))
    shown = wire.named("sendMessage")[-1]
    assert shown["text"] == "💡 Ideas for a animals story (ages 6-8):"
    ideas = keys(shown)
    assert ideas[0] == "idea|animals|en|6-8|0" and ideas[-1] == "more|animals|en|6-8"
    rows = shown["reply_markup"]["inline_keyboard"]
    assert all(len(row) == 1 for row in rows), rows  # a long label has a row of its own
    fake_llm.replies.append("Pip Swims\nPip the turtle paddled across the whole pond.")
    await feed(tg, pressed(ideas[0]))
    user = UserRef("telegram", "12345678")
    [first] = (await engine.stories.history(user))[0][1]
    assert first.prompt == "A turtle learns to swim"
    assert (wire.named("editMessageText") or wire.named("sendMessage"))[-1]["text"].startswith(
        "Pip Swims")

    for n in range(9):  # a second page of the history
        fake_llm.replies.append(f"Story {n}\nOnce upon a time, number {n}.")
        await (await engine.stories.create(user, StoryRequest(prompt=f"story {n}"))).result()
    await feed(tg, fixture("private_text.json", text="/history"))
    page = wire.named("sendMessage")[-1]
    assert "Page 1 of 2 · 10 stories" in page["text"] and keys(page)[-1] == "hp|1|"
    assert sum(k.startswith("open|") for k in keys(page)) == 8
    await feed(tg, pressed("hp|1|"))
    second = wire.named("sendMessage")[-1]
    assert "Page 2 of 2" in second["text"] and keys(second)[-1] == "hp|0|"
    await feed(tg, pressed(f"open|{first.id}"))
    assert "Pip the turtle paddled" in sent_texts(wire)[-1]

    await feed(tg, pressed(f"narrate|{first.id}"))
    assert sent_texts(wire)[-1] == "🔊 Reading it aloud (1 part)."
    assert len(wire.named("sendVoice")) == 1
    await feed(tg, pressed("say"))  # no reply in this chat yet
    assert sent_texts(wire)[-1] == "There is no reply to read."
