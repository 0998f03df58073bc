"""Telegram ``/voice``: reply mode, and cloning the persona's voice from voice notes.

``/voice clone NAME`` opens a draft; the next voice notes or audio files in the private chat
are its clips; ``/voice consent FULL NAME`` records who agreed and finishes. Who may clone is
the engine's call (``[engine] admins``, the persona's ``owners``; in a group, its admins).
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatAction, ChatType
from telegram.ext import ContextTypes

from bot.telegram.stream import chat_action
from bot.telegram.users import chat_key, is_chat_admin, user_ref
from engine.api import Engine

Context = ContextTypes.DEFAULT_TYPE

USAGE = ("/voice text|voice|both - how I reply\n"
         "/voice clone NAME - clone this persona's voice (then send 1-3 clips of 6-30 s)\n"
         "/voice consent FULL NAME - confirm the person heard agreed, and finish\n"
         "/voice list | use ID | delete ID | cancel")


class VoiceHandlers:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def command(self, update: Update, context: Context) -> None:
        user, msg = user_ref(update), update.effective_message
        assert msg is not None
        args = list(context.args or [])
        action = args[0].lower() if args else ""
        voices = self.engine.voices
        persona = await self.engine.current_persona(user, chat_key(update))
        if action not in ("clone", "consent", "cancel", "list", "use", "delete", "help"):
            if action:
                await self.engine.set_reply_mode(user, action)
            mode = await self.engine.reply_mode(user)
            await msg.reply_text(f"I reply with: {mode}. Change with /voice text, /voice voice "
                                 "or /voice both. /voice help for cloning.")
        elif action == "clone":
            if msg.chat.type != ChatType.PRIVATE:
                await msg.reply_text("Send /voice clone in a private chat with me: the clips "
                                     "are personal.")
                return
            voices.begin(user, persona, " ".join(args[1:]),
                         is_admin=await is_chat_admin(update, context))
            await msg.reply_text(
                f"Send 1-3 voice notes or audio files of {persona.display_name} speaking, "
                "6-30 s each, one person, little background noise. Then send /voice consent "
                "followed by the full name of the person heard, to confirm they agreed to "
                "have their voice cloned. /voice cancel stops.")
        elif action == "consent":
            async with chat_action(context.bot, msg.chat.id, ChatAction.RECORD_VOICE):
                done = await voices.finish(user, " ".join(args[1:]))
            await msg.reply_voice(
                done.sample.ogg, duration=max(1, round(done.sample.duration_s)),
                caption=f"\"{done.voice.name}\" ({done.voice.id}) is now "
                        f"{persona.display_name}'s voice. Consent of "
                        f"{done.voice.consent_speaker} recorded. "
                        f"{self.engine.voice_caption}".strip())
        elif action == "cancel":
            await msg.reply_text("Stopped: nothing was stored." if voices.cancel(user)
                                 else "No voice is being cloned.")
        elif action == "list":
            listed = await voices.list(persona)
            lines = [f"{'•' if v.active else '◦'} {v.id} {v.name}: {v.clips} clip(s), "
                     f"{v.seconds:.0f} s, consent of {v.consent_speaker}" for v in listed]
            await msg.reply_text("\n".join(lines) if lines else
                                 f"{persona.display_name} has no cloned voice.")
        elif action in ("use", "delete") and len(args) == 2:
            is_admin = await is_chat_admin(update, context)
            if action == "use":
                v = await voices.use(user, args[1], is_admin=is_admin)
                await msg.reply_text(f"{persona.display_name} now speaks as \"{v.name}\".")
            else:
                v = await voices.delete(user, args[1], is_admin=is_admin)
                await msg.reply_text(f"Deleted \"{v.name}\" with its clips.")
        else:
            await msg.reply_text(USAGE)

    def collecting(self, update: Update) -> bool:
        """Is this private chat's user sending clips for a voice being cloned?"""
        chat = update.effective_chat
        return (chat is not None and chat.type == ChatType.PRIVATE
                and self.engine.voices.draft(user_ref(update)) is not None)

    async def clip(self, update: Update, data: bytes) -> None:
        msg = update.effective_message
        assert msg is not None
        draft = await self.engine.voices.add_clip(user_ref(update), data)
        clip = draft.clips[-1]
        await msg.reply_text(
            f"Clip {len(draft.clips)} is good ({clip.seconds:.1f} s). Send another, or "
            "/voice consent FULL NAME to finish.")
