"""The Discord adapter: real gateway payloads through discord.py's own parsers, and discord.py's
own HTTP client talking to FakeDiscord on loopback (tests/auxil/discord_api.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from bot.discord.adapter import DiscordAdapter
from bot.discord.settings import DiscordConfig
from engine.engine import Engine, UserRef
from engine.storage.models import Favourite
from engine.stories.options import StoryRequest
from engine.vision.service import NO_VISION
from tests.auxil.discord_api import BOT_ID, Call, FakeDiscord, command, component, fixture
from tests.auxil.eventually import HANG_S
from tests.auxil.fake_llm import FakeLLM, introduced
from tests.auxil.llm_api import SEEN, FakeLLMServer
from tests.auxil.speech import words_heard
from tests.conftest import MakeConfig, give_avatar
from tests.engine.test_photo_story import STORY as PHOTO_STORY
from tests.engine.test_photo_story import photo

DM_USER = UserRef("discord", "614024381422914001")
DM_CHANNEL = "1464011821823801768"
GUILD_USER = UserRef("discord", "1079636830210202985")


@pytest.fixture
async def dc(engine: Engine, fake: FakeDiscord) -> AsyncIterator[DiscordAdapter]:
    adapter = DiscordAdapter(engine, DiscordConfig(api_base=f"{fake.url}/api/v10",
                                                   edit_interval_s=0.2), "test.bot.token",
                             connect=False)
    await adapter.start()
    yield adapter
    await adapter.stop()


async def settle() -> None:
    """Wait for the event and command tasks discord.py started (and what they started)."""
    for _ in range(50):
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                 and not t.done() and t.get_name().startswith(("discord.py", "CommandTree"))]
        if not tasks:
            return
        await asyncio.wait(tasks, timeout=HANG_S)


async def feed(dc: DiscordAdapter, event: str, data: dict[str, Any]) -> None:
    parser = getattr(dc.client._connection, f"parse_{event.lower()}")
    parser(data)
    await settle()


def posted(fake: FakeDiscord) -> list[dict[str, Any]]:
    """Message bodies sent to channels and as interaction follow-ups, in order."""
    return [c.json for c in fake.calls if c.method == "POST" and (
        c.path.endswith("/messages") or c.path.startswith("/webhooks/"))]


def shown(fake: FakeDiscord) -> str:
    """What the last message sent or edited says now (a story's pictures, which follow
    its text, are not a message that says anything)."""
    return [c.json.get("content") or "" for c in fake.calls if c.method in ("POST", "PATCH")
            and (c.path.split("/")[-2:-1] == ["messages"] or c.path.endswith("/messages")
                 or c.path.startswith("/webhooks/")) and not pictures_of(c)][-1]


def pictures_of(call: Call) -> list[tuple[str, bytes]]:
    """The pictures a message carries: its embeds' images, attached (name, bytes)."""
    body = call.json if isinstance(call.json, dict) else {}
    wanted = [e["image"]["url"].removeprefix("attachment://")
              for e in body.get("embeds") or [] if "image" in e]
    return [(name, data) for name, _, data in call.files.values() if name in wanted]


def texts(fake: FakeDiscord) -> list[str]:
    return [b.get("content") or "" for b in posted(fake)]


def custom_ids(body: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in body.get("components", []) for c in row["components"]]


async def test_login_registers_slash_commands(dc: DiscordAdapter, fake: FakeDiscord) -> None:
    [sync] = fake.named("PUT", "/applications/*/commands")
    names = {c["name"] for c in sync.json}
    assert {"story", "ask", "persona", "voice", "history", "favourites", "prompts", "genres",
            "cancel", "forget", "help", "ideas"} <= names
    story = next(c for c in sync.json if c["name"] == "story")
    genre = next(o for o in story["options"] if o["name"] == "genre")
    assert genre["autocomplete"] is True and story["description"]
    voice = next(c for c in sync.json if c["name"] == "voice")
    assert {o["name"] for o in voice["options"]} == {"mode", "clone", "list", "use", "delete"}


async def test_dm_streams_a_reply_by_paced_edits_with_buttons(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    words = ("Mario, the rent roll came in this morning and it looks fine. I will send the "
             "numbers to Jeff later today, once the bank confirms the transfer. Phillip")
    fake_llm.replies.append(words)
    fake_llm.token_delay_s = 0.03
    await feed(dc, "MESSAGE_CREATE",
               fixture("constructed/discord/gateway_message_create_dm_text.json"))
    typing = fake.named("POST", f"/channels/{DM_CHANNEL}/typing")[0]
    first = fake.named("POST", f"/channels/{DM_CHANNEL}/messages")[0]
    assert fake.calls.index(typing) < fake.calls.index(first)  # "typing…" while it works
    assert int(first.json["message_reference"]["message_id"]) == 1482448762364371130
    edits = fake.named("PATCH", f"/channels/{DM_CHANNEL}/messages/*")
    assert len(edits) >= 2
    live = [first, *edits[:-1]]  # the last edit is the final text, sent at once
    gaps = [b.at - a.at for a, b in itertools.pairwise(live)]
    assert gaps and all(g >= 0.15 for g in gaps)  # paced, never hammering
    disclosure, body = edits[-1].json["content"].split("\n\n", 1)
    assert body == words  # first contact: said to be an AI persona, once
    assert disclosure.startswith("🤖 I'm an AI persona of Phillip Allen, not the real person")
    history = await engine.history(DM_USER)
    assert history[-1].content == words
    rid = history[-1].id
    assert custom_ids(edits[-1].json) == [f"dp:favmsg:{rid}", "dp:regen:", "dp:say:",
                                          f"dp:good:reply:{rid}", f"dp:bad:reply:{rid}"]
    await feed(dc, "INTERACTION_CREATE", component(f"dp:bad:reply:{rid}"))
    [rated] = await engine.feedback.stats()
    assert (rated.kind, rated.persona, rated.good, rated.bad) == ("reply", "allen", 0, 1)

    await feed(dc, "INTERACTION_CREATE", component(f"dp:favmsg:{history[-1].id}"))
    callback = fake.named("POST", "/interactions/*/*/callback")[-1]
    assert callback.json["type"] == 6  # deferred update, within the 3 s
    assert texts(fake)[-1] == "⭐ Saved to your favourites."
    assert posted(fake)[-1]["flags"] == 64  # ephemeral
    async with engine.db.session() as s:
        assert [f.message_id for f in (await s.scalars(select(Favourite))).all()] == [
            history[-1].id]


async def test_long_reply_is_split_at_2000_characters(
        dc: DiscordAdapter, fake: FakeDiscord, fake_llm: FakeLLM) -> None:
    long = " ".join(f"Sentence number {i} is about the gas desk and its many trades."
                    for i in range(80))
    fake_llm.replies.append(long)
    dc.engine.sampling = replace(dc.engine.sampling, max_tokens=1500)
    await introduced(dc.engine, DM_USER)
    await feed(dc, "MESSAGE_CREATE",
               fixture("constructed/discord/gateway_message_create_dm_text.json"))
    edits = fake.named("PATCH", f"/channels/{DM_CHANNEL}/messages/*")
    parts = [edits[-1].json["content"]] + [
        c.json["content"] for c in fake.named("POST", f"/channels/{DM_CHANNEL}/messages")[1:]]
    assert len(parts) == 3 and all(len(p) <= 2000 for p in parts)
    assert " ".join(parts) == long
    assert all(p.rstrip().endswith(".") for p in parts)  # cut between sentences
    last = fake.named("POST", f"/channels/{DM_CHANNEL}/messages")[-1].json
    assert custom_ids(last)[1:3] == ["dp:regen:", "dp:say:"]
    assert "components" not in edits[-1].json or not edits[-1].json["components"]


async def test_guild_answers_mentions_only(dc: DiscordAdapter, fake: FakeDiscord,
                                           engine: Engine, fake_llm: FakeLLM) -> None:
    await feed(dc, "MESSAGE_CREATE", fixture("discord/gateway_message_create_guild_text.json"))
    assert fake.named("POST", "/channels/*/messages") == []  # ".ping", not for us
    fake_llm.replies.append("Hey yourself.")
    mention = fixture("discord/gateway_message_create_guild_bot_mention_2026.json")
    await introduced(engine, UserRef("discord", mention["author"]["id"]))
    await feed(dc, "MESSAGE_CREATE", mention)
    author = UserRef("discord", mention["author"]["id"])
    history = await engine.history(author, chat_key=f"dc:{mention['channel_id']}")
    assert [m.content for m in history] == ["Hey", "Hey yourself."]
    assert shown(fake) == "Hey yourself."
    # In a server the persona answers as itself: its own webhook, made once, reused.
    [hook] = fake.webhooks.values()
    assert (hook["name"], hook["channel_id"]) == ("Phillip Allen", mention["channel_id"])
    assert fake.named("POST", f"/webhooks/{hook['id']}/{hook['token']}")
    assert fake.named("POST", f"/channels/{mention['channel_id']}/messages") == []
    fake_llm.replies.append("Still here.")
    mention["id"] = str(int(mention["id"]) + 1)
    await feed(dc, "MESSAGE_CREATE", mention)
    assert shown(fake) == "Still here." and len(fake.webhooks) == 1
    assert len(fake.named("POST", f"/channels/{mention['channel_id']}/webhooks")) == 1


async def test_without_the_webhook_permission_the_bot_answers_as_itself_and_says_once(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    fake.refuse_webhooks = True
    mention = fixture("discord/gateway_message_create_guild_bot_mention_2026.json")
    await introduced(engine, UserRef("discord", mention["author"]["id"]))
    for n, text in enumerate(("Hey yourself.", "Again.")):
        fake_llm.replies.append(text)
        mention["id"] = str(int(mention["id"]) + n)
        await feed(dc, "MESSAGE_CREATE", mention)
    posted_here = [c.json for c in fake.named("POST", f"/channels/{mention['channel_id']}/"
                                                       "messages")]
    assert int(posted_here[0]["message_reference"]["message_id"]) == int(mention["id"]) - 1
    notes = [b["content"] for b in posted_here if "Manage Webhooks" in b.get("content", "")]
    assert notes == ["(I can answer as Phillip Allen, with their own name and picture, once "
                     "I have the Manage Webhooks permission in this channel.)"]


async def test_a_persona_with_an_avatar_gets_a_webhook_with_its_face(
        make_config: MakeConfig, personas_dir: Path, fake: FakeDiscord,
        fake_llm: FakeLLM) -> None:
    face = give_avatar(personas_dir)
    engine = Engine(make_config(personas={"dir": str(personas_dir)}), llm=fake_llm)
    mention = fixture("discord/gateway_message_create_guild_bot_mention_2026.json")
    async with started(engine, fake) as adapter:
        await introduced(engine, UserRef("discord", mention["author"]["id"]))
        await feed(adapter, "MESSAGE_CREATE", mention)
    [hook] = fake.webhooks.values()
    assert hook["sent_avatar"].startswith("data:image/png;base64,")
    assert base64.b64decode(hook["sent_avatar"].split(",", 1)[1]) == face


async def test_allowed_channels_keep_the_bot_out_of_others(
        engine: Engine, fake: FakeDiscord) -> None:
    adapter = DiscordAdapter(engine, DiscordConfig(api_base=f"{fake.url}/api/v10",
                                                   allowed_channels=(1,)), "t", connect=False)
    await adapter.start()
    try:
        await feed(adapter, "MESSAGE_CREATE",
                   fixture("discord/gateway_message_create_guild_bot_mention_2026.json"))
    finally:
        await adapter.stop()
    assert fake.named("POST", "/channels/*/messages") == []


SPOKEN = "Please tell me about the rent roll for the apartments."


async def spoken_note(engine: Engine) -> bytes:
    note = await engine.voice.speak(SPOKEN)
    return note.ogg


async def test_voice_message_in_is_transcribed_and_answered_with_a_voice_message(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("The rent roll came in on Friday and it looks good to me.")
    await introduced(engine, DM_USER)
    data = fixture("constructed/discord/gateway_message_create_dm_voice_message.json")
    ogg = await spoken_note(engine)
    attachment = data["attachments"][0]
    attachment["url"] = attachment["proxy_url"] = fake.serve("voice-message.ogg", ogg)
    attachment["size"] = len(ogg)
    await feed(dc, "MESSAGE_CREATE", data)
    said = texts(fake)[0]
    assert said.startswith("🎙 you said: ") and words_heard(SPOKEN, said) >= 0.8
    voice = [c for c in fake.named("POST", f"/channels/{DM_CHANNEL}/messages")
             if c.files][-1]
    assert voice.json["flags"] == 8192 and not voice.json.get("content")
    [meta] = voice.json["attachments"]
    assert meta["filename"] == "voice-message.ogg"
    assert meta["duration_secs"] > 1.5
    wave = base64.b64decode(meta["waveform"])
    assert len(wave) == 256 and max(wave) == 255
    name, _ctype, body = voice.files["files[0]"]
    assert name == "voice-message.ogg" and body[:4] == b"OggS"
    # A reply of one sentence is shown whole, not as a growing fragment.
    assert texts(fake)[1] == "The rent roll came in on Friday and it looks good to me."


async def test_refused_voice_message_falls_back_to_an_audio_file(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    fake.refuse_voice_messages = True
    await engine.set_reply_mode(DM_USER, "voice")
    fake_llm.replies.append("The rent roll came in on Friday and it looks good to me.")
    await feed(dc, "MESSAGE_CREATE",
               fixture("constructed/discord/gateway_message_create_dm_text.json"))
    with_files = [c for c in fake.named("POST", f"/channels/{DM_CHANNEL}/messages") if c.files]
    assert [c.json.get("flags", 0) for c in with_files] == [8192, 0]
    fallback = with_files[-1]
    assert fallback.json["content"] == "AI-generated voice"
    assert fallback.files["files[0]"][0] == "voice-note.ogg"
    assert texts(fake)[-1] == "🔊 AI-generated voice"  # voice mode: no text reply, buttons
    assert "dp:regen:" in custom_ids(posted(fake)[-1])


async def test_oversized_attachment_gets_a_clear_message(dc: DiscordAdapter,
                                                         fake: FakeDiscord) -> None:
    data = fixture("constructed/discord/gateway_message_create_dm_voice_message.json")
    data["attachments"][0]["size"] = 30 * 1024 * 1024
    await feed(dc, "MESSAGE_CREATE", data)
    assert texts(fake) == ["That audio file is over 20 MB, more than I can listen to."]
    assert fake.named("GET", "/cdn/*") == []  # never downloaded


async def test_slash_story_defers_then_streams_follow_ups_with_buttons(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("The Dragon Who Feared the Dark\nMira met a small dragon who "
                            "trembled at night. She lit a lantern, and they became friends.")
    await feed(dc, "INTERACTION_CREATE",
               fixture("constructed/discord/gateway_interaction_create_type2_dm_story_options"
                       ".json"))
    assert fake.calls[0].path.endswith("/callback") or fake.calls.index(
        fake.named("POST", "/interactions/*/*/callback")[0]) < fake.calls.index(
        fake.named("POST", "/webhooks/*/*")[0])
    assert fake.named("POST", "/interactions/*/*/callback")[0].json["type"] == 5
    followups = fake.named("POST", "/webhooks/*/*") + fake.named("PATCH",
                                                                 "/webhooks/*/*/messages/*")
    final = followups[-1].json
    assert final["content"].startswith("**The Dragon Who Feared the Dark**")
    [story] = (await engine.stories.history(DM_USER))[0][1]
    assert story.genre == "fantasy" and "dragon" in story.prompt
    assert custom_ids(final) == [f"dp:fav:{story.id}", f"dp:narrate:{story.id}",
                                 "dp:ideas:fantasy|en|6-8", f"dp:good:story:{story.id}",
                                 f"dp:bad:story:{story.id}"]
    await feed(dc, "INTERACTION_CREATE", component(f"dp:fav:{story.id}"))
    assert texts(fake)[-1] == f"⭐ Saved \"{story.title}\"."
    assert (await engine.stories.favourites(DM_USER))[0].id == story.id


async def test_genre_autocomplete_offers_custom_genres(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine) -> None:
    await engine.stories.add_genre(GUILD_USER, "fantasy pirates", "pirates with magic")
    await feed(dc, "INTERACTION_CREATE", fixture(
        "constructed/discord/gateway_interaction_create_type4_autocomplete_story_genre.json"))
    [answer] = fake.named("POST", "/interactions/*/*/callback")
    assert answer.json["type"] == 8
    assert [c["value"] for c in answer.json["data"]["choices"]] == ["fantasy",
                                                                   "fantasy pirates"]


async def test_history_is_paged_embeds_with_a_select_menu(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    for i in range(10):
        fake_llm.replies.append(f"Tale {i}\nOnce upon a time there was story number {i}.")
        await (await engine.stories.create(DM_USER, StoryRequest())).result()
    await feed(dc, "INTERACTION_CREATE", command("history"))
    page = posted(fake)[-1]
    [embed] = page["embeds"]
    assert embed["footer"]["text"] == "Page 1 of 2 · 10 stories"
    select = page["components"][0]["components"][0]
    assert select["custom_id"] == "dp:open:" and len(select["options"]) == 8
    assert custom_ids(page)[-1] == "dp:hp:1|"
    await feed(dc, "INTERACTION_CREATE", component("dp:hp:1|"))
    page2 = posted(fake)[-1]
    assert page2["embeds"][0]["footer"]["text"] == "Page 2 of 2 · 10 stories"
    assert len(page2["components"][0]["components"][0]["options"]) == 2
    story_id = page2["components"][0]["components"][0]["options"][0]["value"]
    await feed(dc, "INTERACTION_CREATE", component("dp:open:", values=[story_id]))
    assert shown(fake).startswith("**Tale 1**")
    [drawn] = [c for c in fake.calls if pictures_of(c)]  # its picture comes with it
    assert pictures_of(drawn)[0][0] == f"story-{story_id}-0.png"


async def test_errors_are_ephemeral_and_friendly(dc: DiscordAdapter, fake: FakeDiscord,
                                                 engine: Engine,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    # a question over the engine's limit (the constructed 6,000-character /ask)
    await feed(dc, "INTERACTION_CREATE", fixture(
        "constructed/discord/gateway_interaction_create_type2_guild_ask_long_string.json"))
    assert "too long" in texts(fake)[-1] and posted(fake)[-1]["flags"] == 64
    # a command this bot does not have (stale registration), a button of an older version
    await feed(dc, "INTERACTION_CREATE", command("dance", interaction_id="1483183131092422200"))
    last = fake.named("POST", "/interactions/*/*/callback")[-1].json
    assert last["data"]["content"] == "I don't know that command (any more). Try /help."
    assert last["data"]["flags"] == 64
    await feed(dc, "INTERACTION_CREATE", component("dp:zzz:1"))
    assert "older version" in texts(fake)[-1]

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    engine.stories.favourites = broken  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.ERROR):
        await feed(dc, "INTERACTION_CREATE", command("favourites"))
    assert texts(fake)[-1] == "Sorry, something went wrong on my side. Please try again."
    assert "database on fire" in caplog.text
    assert "test.bot.token" not in caplog.text


async def test_server_persona_is_for_admins(dc: DiscordAdapter, fake: FakeDiscord,
                                           engine: Engine) -> None:
    guild_cmd = command("persona", [{"name": "name", "type": 3, "value": "storyteller"},
                                    {"name": "server", "type": 5, "value": True}], guild=True)
    await feed(dc, "INTERACTION_CREATE", guild_cmd)
    assert texts(fake)[-1] == "Only server admins can set the server's persona."
    guild_cmd["member"]["permissions"] = str(int(guild_cmd["member"]["permissions"]) | 32)
    guild_cmd["id"] = "1483183131092422300"
    await feed(dc, "INTERACTION_CREATE", guild_cmd)
    assert texts(fake)[-1] == "This server now talks to Grandma Tilly."
    someone = UserRef("discord", "1")
    persona = await engine.current_persona(someone, "dc:1205788436221030348",
                                           server="discord:1205605430856372675")
    assert persona.name == "storyteller"
    assert (await engine.current_persona(someone)).name == "allen"  # DMs keep the default


async def test_bot_messages_and_its_own_are_ignored(dc: DiscordAdapter,
                                                    fake: FakeDiscord) -> None:
    own = fixture("constructed/discord/gateway_message_create_dm_text.json")
    own["author"]["id"], own["author"]["bot"] = BOT_ID, True
    await feed(dc, "MESSAGE_CREATE", own)
    await feed(dc, "MESSAGE_CREATE",
               fixture("discord/gateway_message_create_bot_message_with_components_2026.json"))
    assert posted(fake) == []


def opt(name: str, value: object, kind: int = 3) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


async def test_every_command_defers_first_then_answers(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    engine.web.serving_at("http://127.0.0.1:8000")  # as the HTTP adapter does when it listens
    cases: list[tuple[str, list[dict[str, Any]], str]] = [
        ("help", [], "**Talk to me** in a DM"),
        ("voice", [{"name": "mode", "type": 1, "options": [opt("mode", "both")]}],
         "I reply with: both."),
        ("voice", [{"name": "list", "type": 1, "options": []}],
         "Phillip Allen has no cloned voice."),
        ("genres", [opt("action", "add space_pirates kind pirates")], "space pirates"),
        ("prompts", [opt("action", "save bunny genre=bedtime counting stars")], "bunny"),
        ("prompts", [], "bunny"),
        ("persona", [opt("name", "storyteller")], "You are now talking to Grandma Tilly."),
        ("cancel", [], "Nothing to stop."),
        ("favourites", [], "No favourites yet"),
        ("export", [], "Everything I store about you:"),
        ("achievements", [], "Stories written: 0"),
        ("web", [], "Your sign-in link for the web app"),
        ("forget", [], "Are you sure?"),
    ]
    for n, (name, options, expected) in enumerate(cases):
        before = len(fake.calls)
        await feed(dc, "INTERACTION_CREATE", command(name, options,
                                                     interaction_id=f"14831831310924{n:05d}"))
        calls = fake.calls[before:]
        assert calls[0].path.endswith("/callback") and calls[0].json["type"] == 5, name
        assert expected in shown(fake), (name, shown(fake))
    export = next(c for c in fake.named("POST", "/webhooks/*/*") if c.files)
    name, _, body = export.files["files[0]"]
    assert name == "doppel-export.zip" and body[:2] == b"PK" and export.json["flags"] == 64
    assert custom_ids(posted(fake)[-1]) == ["dp:forget:yes", "dp:forget:no"]
    await engine.set_reply_mode(DM_USER, "text")
    await feed(dc, "INTERACTION_CREATE", component("dp:forget:yes"))
    assert shown(fake) == "Done: I have forgotten everything about you."
    assert await engine.stories.saved_prompts(DM_USER) == []


async def test_voice_clone_without_xtts_explains(dc: DiscordAdapter, fake: FakeDiscord,
                                                 engine: Engine) -> None:
    ogg = await spoken_note(engine)
    data = command("voice", [{"name": "clone", "type": 1, "options": [
        opt("name", "studio"), opt("consent", "Phillip Allen"),
        opt("clip1", "1482449359469719265", kind=11)]}])
    data["data"]["resolved"] = {"attachments": {"1482449359469719265": {
        "id": "1482449359469719265", "filename": "me.ogg", "size": len(ogg),
        "url": fake.serve("me.ogg", ogg), "proxy_url": fake.serve("me.ogg", ogg),
        "content_type": "audio/ogg"}}}
    await feed(dc, "INTERACTION_CREATE", data)
    assert "needs the XTTS-v2 voice model" in shown(fake)


async def test_ideas_button_writes_that_story_and_buttons_replay_and_read_aloud(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("A turtle learns to swim\nA fox finds a friend\nThe moon hides\n"
                            "A robot bakes bread\nThe lost kite")
    await feed(dc, "INTERACTION_CREATE", command("ideas", [opt("genre", "animals")]))
    ideas = custom_ids(posted(fake)[-1])
    assert ideas[0] == "dp:idea:animals|en|6-8|0" and ideas[-1] == "dp:more:animals|en|6-8"
    fake_llm.replies.append("Pip Swims\nPip the turtle paddled and paddled until he could "
                            "swim across the whole pond.")
    await feed(dc, "INTERACTION_CREATE", component(ideas[0]))
    [story] = (await engine.stories.history(DM_USER))[0][1]
    assert story.prompt == "A turtle learns to swim" and shown(fake).startswith("**Pip Swims**")
    [drawn] = [c for c in fake.calls if pictures_of(c)]  # the cover card follows the text
    assert [e["description"] for e in drawn.json["embeds"]] == ["Pip Swims"]
    [(name, png)] = pictures_of(drawn)
    assert name == f"story-{story.id}-0.png"
    assert Image.open(io.BytesIO(png)).size == (512, 512)

    await feed(dc, "INTERACTION_CREATE", component(f"dp:narrate:{story.id}"))
    voice = [c for c in fake.named("POST", f"/channels/{DM_CHANNEL}/messages") if c.files]
    assert voice and voice[-1].json["flags"] == 8192

    fake_llm.replies.append("The rent roll is fine, Jeff.")
    await feed(dc, "MESSAGE_CREATE",
               fixture("constructed/discord/gateway_message_create_dm_text.json"))
    fake_llm.replies.append("Again: the rent roll is fine.")
    await feed(dc, "INTERACTION_CREATE", component("dp:regen:"))
    assert shown(fake) == "Again: the rent roll is fine."
    history = await engine.history(DM_USER)
    assert [m.content for m in history][-2:] == [
        "hey! can you tell me a story about a brave girl and a dragon? something short for "
        "bedtime 🐉", "Again: the rent roll is fine."]
    await feed(dc, "INTERACTION_CREATE", component("dp:say:"))
    voice = [c for c in fake.named("POST", f"/channels/{DM_CHANNEL}/messages") if c.files]
    assert len(voice) == 2


@contextlib.asynccontextmanager
async def started(engine: Engine, fake: FakeDiscord) -> AsyncIterator[DiscordAdapter]:
    """An engine of the test's own (other settings than the ``engine`` fixture's) and its
    adapter, started; both stopped after."""
    await engine.start()
    adapter = DiscordAdapter(engine, DiscordConfig(api_base=f"{fake.url}/api/v10",
                                                   edit_interval_s=0.2), "test.bot.token",
                             connect=False)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()
        await engine.stop()


async def test_a_drawn_story_comes_with_its_pictures_as_embeds(
        make_config: MakeConfig, tiny_diffusion: Path, fake: FakeDiscord,
        fake_llm: FakeLLM) -> None:
    engine = Engine(make_config(images={"model_dir": str(tiny_diffusion), "size": 64,
                                        "steps": 1, "chapters": 2}), llm=fake_llm)
    async with started(engine, fake) as adapter:
        fake_llm.replies.append(PHOTO_STORY)
        await feed(adapter, "INTERACTION_CREATE", command("story", [opt("genre", "animals")]))
        [story] = (await engine.stories.history(DM_USER))[0][1]
    assert shown(fake).startswith("**Biscuit and the Red Sofa**")
    [drawn] = [c for c in fake.calls if pictures_of(c)]
    assert [e["description"][:10] for e in drawn.json["embeds"]] == [
        "Biscuit an", "Biscuit th", "Every morn"]
    names = [name for name, _ in pictures_of(drawn)]
    assert names == [f"story-{story.id}-{n}.jpg" for n in range(3)]
    for _, jpeg in pictures_of(drawn):
        assert Image.open(io.BytesIO(jpeg)).size == (64, 64)


async def test_story_with_a_photo_is_about_the_photo(make_config: MakeConfig,
                                                     fake: FakeDiscord,
                                                     fake_llm: FakeLLM) -> None:
    jpeg = photo()
    with FakeLLMServer() as vision:
        engine = Engine(make_config(vision={"backend": "openai", "api_base": vision.base}),
                        llm=fake_llm)
        async with started(engine, fake) as adapter:
            fake_llm.replies.append(PHOTO_STORY)
            data = command("story", [opt("genre", "animals"),
                                     opt("photo", "1482449359469719266", kind=11)])
            data["data"]["resolved"] = {"attachments": {"1482449359469719266": {
                "id": "1482449359469719266", "filename": "dog.jpg", "size": len(jpeg),
                "url": fake.serve("dog.jpg", jpeg), "proxy_url": fake.serve("dog.jpg", jpeg),
                "content_type": "image/jpeg"}}}
            await feed(adapter, "INTERACTION_CREATE", data)
            assert len(vision.photos) == 1
    assert f"A story about what this photo shows: {SEEN}" in fake_llm.prompts[-1][-1].content
    assert shown(fake).startswith("**Biscuit and the Red Sofa**")


async def test_story_with_a_photo_and_no_vision_model_says_what_it_needs(
        dc: DiscordAdapter, fake: FakeDiscord) -> None:
    jpeg = photo()
    data = command("story", [opt("photo", "1482449359469719267", kind=11)])
    data["data"]["resolved"] = {"attachments": {"1482449359469719267": {
        "id": "1482449359469719267", "filename": "dog.jpg", "size": len(jpeg),
        "url": fake.serve("dog.jpg", jpeg), "proxy_url": fake.serve("dog.jpg", jpeg),
        "content_type": "image/jpeg"}}}
    await feed(dc, "INTERACTION_CREATE", data)
    assert NO_VISION in shown(fake)


async def test_memories_command_lists_and_forgets(dc: DiscordAdapter, fake: FakeDiscord,
                                                  engine: Engine) -> None:
    await engine.user_memories.learn(DM_USER, "allen", "Call me Sam. I have two cats.")
    await feed(dc, "INTERACTION_CREATE", command("memories"))
    assert "1. Your name is Sam." in shown(fake) and "2. You have two cats." in shown(fake)
    await feed(dc, "INTERACTION_CREATE", command("memories", [opt("forget", 1, kind=4)]))
    assert shown(fake) == "Forgotten: Your name is Sam."
    assert [m.slot for m in await engine.user_memories.all(DM_USER, "allen")] == ["have:cats"]


async def test_what_is_told_in_a_server_stays_there_and_its_admins_see_it(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    mention = fixture("discord/gateway_message_create_guild_bot_mention_2026.json")
    teller = UserRef("discord", mention["author"]["id"])
    await introduced(engine, teller)
    mention["content"] = f"<@{BOT_ID}> Call me Sam. I have two cats."
    fake_llm.replies.append("Nice to meet you, Sam.")
    await feed(dc, "MESSAGE_CREATE", mention)
    told = await engine.user_memories.all(teller, "allen")
    assert [(m.scope, m.slot) for m in told] == [(f"discord:{mention['guild_id']}", "name"),
                                                  (f"discord:{mention['guild_id']}",
                                                   "have:cats")]
    # Another server's admins see what was told in theirs, and only with the permission.
    server = "discord:1205605430856372675"
    await engine.user_memories.learn(GUILD_USER, "allen", "I live in Leeds.", place=server)
    await engine.user_memories.learn(GUILD_USER, "allen", "I'm vegetarian.")  # in private
    listing = command("memories", [opt("server", True, kind=5)], guild=True)
    await feed(dc, "INTERACTION_CREATE", listing)
    assert texts(fake)[-1] == "Only this server's admins can see what everyone told me here."
    listing["member"]["permissions"] = str(int(listing["member"]["permissions"]) | 32)
    listing["id"] = "1483183131092422301"
    await feed(dc, "INTERACTION_CREATE", listing)
    assert "1. " in texts(fake)[-1] and "They live in Leeds." in texts(fake)[-1]
    assert "vegetarian" not in texts(fake)[-1] and "cats" not in texts(fake)[-1]
    forget = command("memories", [opt("server", True, kind=5), opt("forget", 1, kind=4)],
                     guild=True, interaction_id="1483183131092422302")
    forget["member"]["permissions"] = listing["member"]["permissions"]
    await feed(dc, "INTERACTION_CREATE", forget)
    assert texts(fake)[-1].startswith("Forgotten (") and "Leeds" in texts(fake)[-1]
    assert [m.slot for m in await engine.user_memories.all(GUILD_USER, "allen")] == ["diet"]


async def mention_n_times(dc: DiscordAdapter, engine: Engine, fake_llm: FakeLLM,
                          n: int) -> dict[str, Any]:
    mention = fixture("discord/gateway_message_create_guild_bot_mention_2026.json")
    await introduced(engine, UserRef("discord", mention["author"]["id"]))
    for turn in range(1, n + 1):
        fake_llm.replies.append(f"Answer number {turn}.")
        mention["id"] = str(int(mention["id"]) + 1)
        mention["content"] = f"<@{BOT_ID}> Question number {turn}?"
        await feed(dc, "MESSAGE_CREATE", mention)
    return mention


async def test_a_long_exchange_moves_to_a_thread_where_no_mention_is_needed(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    mention = await mention_n_times(dc, engine, fake_llm, 3)
    assert fake.threads == {}  # three messages: still in the channel
    fake_llm.replies.append("Answer number 4.")
    mention["id"] = str(int(mention["id"]) + 1)
    mention["content"] = f"<@{BOT_ID}> Question number 4?"
    await feed(dc, "MESSAGE_CREATE", mention)
    [thread] = fake.threads.values()
    assert (thread["id"], thread["parent_id"]) == (mention["id"], mention["channel_id"])
    assert thread["name"] == "Phillip Allen and Test User"
    [hook] = fake.webhooks.values()  # the channel's webhook posts into the thread
    into = [c for c in fake.named("POST", f"/webhooks/{hook['id']}/{hook['token']}")
            if c.query.get("thread_id") == thread["id"]]
    assert into and shown(fake) == "Answer number 4."
    # In the thread everything the person says is for the persona, and the conversation
    # is the same one.
    inside = dict(mention, id=str(int(mention["id"]) + 1), channel_id=thread["id"],
                  content="And one more thing, no mention?", mentions=[])
    fake_llm.replies.append("Answer number 5.")
    await feed(dc, "MESSAGE_CREATE", inside)
    assert shown(fake) == "Answer number 5."
    author = UserRef("discord", mention["author"]["id"])
    said = [m.content for m in await engine.history(
        author, chat_key=f"dc:{mention['channel_id']}") if m.role == "user"]
    assert said == [f"Question number {n}?" for n in range(1, 5)] + [
        "And one more thing, no mention?"]
    assert len(fake.threads) == 1  # no thread inside the thread


async def test_without_the_thread_permission_the_exchange_stays_in_the_channel(
        dc: DiscordAdapter, fake: FakeDiscord, engine: Engine, fake_llm: FakeLLM) -> None:
    fake.refuse_threads = True
    await mention_n_times(dc, engine, fake_llm, 5)
    tried = fake.named("POST", "/channels/*/messages/*/threads")
    assert len(tried) == 1 and fake.threads == {}  # tried once, not at every message
    assert shown(fake) == "Answer number 5."
