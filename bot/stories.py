"""Story commands for the console (and ``doppel story``): parse, call the engine, print."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable

from engine.api import (
    GENRES,
    DoppelError,
    Engine,
    InputError,
    Picture,
    Stories,
    StoryRecord,
    StoryRequest,
    UserRef,
)

STORY_HELP = """\
Stories:
  /story [genre=G age=3-5|6-8|9-12 lang=en|hi length=short|medium|long chars="..."
          sampling=greedy|top_k|top_p|best_of_n n=3] [prompt]   write a story
  /story #N            use suggestion N          /story @NAME    use a saved prompt
  /suggest [genre=G lang=L age=A] [more]         five ideas for today
  /stories [text]      history by date, or search  /open ID  /delete-story ID
  /fav ID  /unfav ID  /favourites                 /clear-stories (asks to confirm)
  /genres  /genre add NAME [description]  /genre remove NAME
  /prompts  /prompt save NAME [options] [prompt]  /prompt delete NAME
  /timezone [Area/City]  /narrate ID"""

_KEYS = {"genre": "genre", "age": "age_group", "lang": "language", "language": "language",
         "length": "length", "chars": "characters", "characters": "characters",
         "sampling": "preset", "preset": "preset", "n": "best_of"}


def parse_request(args: str) -> StoryRequest:
    """``genre=fantasy chars="Mia, a girl" a lost star`` -> StoryRequest."""
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise InputError(str(exc), user_message=f"I couldn't read that: {exc}.") from None
    fields: dict[str, object] = {}
    prompt: list[str] = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and key.lower() in _KEYS:
            name = _KEYS[key.lower()]
            if name == "best_of":
                if not value.isdigit():
                    raise InputError("bad n", user_message="n must be a number from 1 to 8.")
                fields[name] = int(value)
            else:
                fields[name] = value
        else:
            prompt.append(word)
    if prompt:
        fields["prompt"] = " ".join(prompt)
    return StoryRequest(**fields)  # type: ignore[arg-type]


def _line(r: StoryRecord) -> str:
    star = " *" if r.favourite else ""
    lang = "" if r.language == "en" else f", {r.language}"
    return f"  #{r.id} {r.title} ({r.genre}{lang}){star}"


class StoryCommands:
    def __init__(self, engine: Engine, user: UserRef, write: Callable[[str], None], *,
                 show_pictures: Callable[[list[Picture]], Awaitable[None]] | None = None
                 ) -> None:
        self.engine = engine
        self.user = user
        self.write = write
        self.show_pictures = show_pictures
        """Where a story's pictures go (the console saves them); None: not shown here."""
        self.last_suggestions: list[str] = []
        self.suggested_for = StoryRequest()
        """The genre, language and age group the last suggestions were made for."""
        self.awaiting_clear_confirmation = False

    @property
    def stories(self) -> Stories:
        return self.engine.stories

    async def run(self, name: str, arg: str) -> bool:
        """Handle ``/name arg`` if it is a story command; False if it is not one."""
        handler = {
            "/story": self.story, "/suggest": self.suggest, "/stories": self.history,
            "/open": self.open, "/fav": self.fav, "/unfav": self.unfav,
            "/favourites": self.favourites, "/favorites": self.favourites,
            "/delete-story": self.delete, "/clear-stories": self.clear,
            "/genres": self.genres, "/genre": self.genre, "/prompts": self.prompts,
            "/prompt": self.prompt, "/timezone": self.timezone, "/narrate": self.narrate,
        }.get(name)
        if handler is None:
            return False
        if name != "/clear-stories":
            self.awaiting_clear_confirmation = False
        await handler(arg)
        return True

    async def story(self, arg: str) -> None:
        arg = arg.strip()
        if arg.startswith("#"):
            idx = arg[1:].split(" ", 1)[0]
            if not idx.isdigit() or not 1 <= int(idx) <= len(self.last_suggestions):
                raise InputError("bad suggestion", user_message="Run /suggest first, then "
                                                                "/story #1 to #5.")
            req = overlay(self.suggested_for, parse_request(arg[len(idx) + 1:]))
            req = StoryRequest(**{**req.__dict__,
                                  "prompt": self.last_suggestions[int(idx) - 1]})
        elif arg.startswith("@"):
            name, _, rest = arg[1:].partition(" ")
            saved = await self.stories.saved_prompt(self.user, name)
            req = overlay(saved, parse_request(rest))
        else:
            req = parse_request(arg)
        reply = await self.stories.create(self.user, req,
                                          on_position=lambda p: self.write(
                                              f"(you are #{p} in line)\n"))
        async for chunk in reply:
            self.write(chunk)
        try:
            record = await reply.result()
        except DoppelError as exc:
            self.write(f"\n{exc.user_message}\n")
            return
        self.write(f"\n-- saved as #{record.id} \"{record.title}\". /fav {record.id} to keep "
                   "it in your favourites.\n")
        await self._pictures(record)

    async def _pictures(self, record: StoryRecord) -> None:
        if self.show_pictures is None or not self.engine.pictures.enabled:
            return
        try:
            pictures = await self.engine.pictures.illustrate(self.user, record)
        except DoppelError as exc:
            self.write(f"(no pictures: {exc.user_message})\n")
            return
        await self.show_pictures(pictures)

    async def suggest(self, arg: str) -> None:
        words = arg.split()
        refresh = "more" in words
        req = parse_request(" ".join(w for w in words if w != "more"))
        if req.prompt and "=" not in arg.split()[0]:
            req = StoryRequest(**{**req.__dict__, "genre": req.prompt, "prompt": ""})
        self.last_suggestions = await self.stories.suggestions(
            self.user, req.genre, req.language, req.age_group, refresh=refresh)
        self.suggested_for = StoryRequest(genre=req.genre, language=req.language,
                                          age_group=req.age_group)
        self.write(f"Ideas for {req.genre} ({req.age_group}):\n")
        for n, idea in enumerate(self.last_suggestions, 1):
            self.write(f"  {n}. {idea}\n")
        self.write("Use one with /story #N; /suggest more for new ones.\n")

    async def history(self, arg: str) -> None:
        groups = await self.stories.history(self.user, search=arg)
        if not groups:
            self.write("No stories found.\n" if arg else "No stories yet. Try /story.\n")
        for label, records in groups:
            self.write(f"{label}:\n")
            for r in records:
                self.write(_line(r) + "\n")

    async def open(self, arg: str) -> None:
        r = await self.stories.open(self.user, _story_id(arg))
        star = " (favourite)" if r.favourite else ""
        self.write(f"#{r.id} {r.title}{star}\n{r.created_at:%Y-%m-%d} · {r.genre} · "
                   f"ages {r.age_group} · {r.language}\n\n{r.content}\n")
        await self._pictures(r)

    async def fav(self, arg: str) -> None:
        r = await self.stories.favourite(self.user, _story_id(arg), True)
        self.write(f"Added \"{r.title}\" to your favourites.\n")

    async def unfav(self, arg: str) -> None:
        r = await self.stories.favourite(self.user, _story_id(arg), False)
        self.write(f"Removed \"{r.title}\" from your favourites.\n")

    async def favourites(self, arg: str) -> None:
        records = await self.stories.favourites(self.user)
        self.write("Favourites:\n" if records else "No favourites yet. /fav ID adds one.\n")
        for r in records:
            self.write(_line(r) + "\n")

    async def delete(self, arg: str) -> None:
        await self.stories.delete(self.user, _story_id(arg))
        self.write("Deleted.\n")

    async def clear(self, arg: str) -> None:
        if arg.strip().lower() == "yes" and self.awaiting_clear_confirmation:
            n = await self.stories.clear_history(self.user, confirm=True)
            self.write(f"Cleared {n} stories from your history; favourites are kept.\n")
            self.awaiting_clear_confirmation = False
            return
        n = await self.stories.clear_history(self.user)
        self.awaiting_clear_confirmation = True
        self.write(f"This clears {n} stories from your history (favourites are kept). "
                   "Type /clear-stories yes to confirm.\n")

    async def genres(self, arg: str) -> None:
        mine = await self.stories.genres(self.user)
        self.write("Genres: " + ", ".join(GENRES) + "\n")
        self.write("Yours: " + (", ".join(g.name for g in mine) or "none yet "
                                "(/genre add NAME [description])") + "\n")

    async def genre(self, arg: str) -> None:
        """``/genre add NAME [description]``: NAME is one word (``space_pirates``) or quoted
        (``"space pirates"``, as ``doppel story genre add "space pirates"`` passes it)."""
        try:
            action, name, *more = [*shlex.split(arg), "", ""]
            description = " ".join(more).strip()
        except ValueError:  # an apostrophe in a description: plain words then
            action, _, rest = arg.strip().partition(" ")
            name, _, description = rest.strip().partition(" ")
        if action == "add" and name:
            await self.stories.add_genre(self.user, name.replace("_", " "), description)
            self.write(f"Added the genre '{name.replace('_', ' ').lower()}'.\n")
        elif action == "remove" and name:
            done = await self.stories.remove_genre(self.user, name.replace("_", " "))
            self.write("Removed.\n" if done else f"You have no genre '{name}'.\n")
        else:
            self.write("Usage: /genre add NAME [description] | /genre remove NAME\n")

    async def prompts(self, arg: str) -> None:
        saved = await self.stories.saved_prompts(self.user)
        if not saved:
            self.write("No saved prompts. /prompt save NAME [options] [prompt]\n")
        for name, req in saved:
            self.write(f"  @{name}: {req.genre}, ages {req.age_group}, {req.language}, "
                       f"{req.length}: {req.prompt or '(no prompt)'}\n")

    async def prompt(self, arg: str) -> None:
        action, _, rest = arg.strip().partition(" ")
        name, _, options = rest.strip().partition(" ")
        if action == "save" and name:
            await self.stories.save_prompt(self.user, name, parse_request(options))
            self.write(f"Saved. Use it with /story @{name}.\n")
        elif action == "delete" and name:
            done = await self.stories.delete_prompt(self.user, name)
            self.write("Deleted.\n" if done else f"You have no saved prompt '{name}'.\n")
        else:
            self.write("Usage: /prompt save NAME [options] [prompt] | /prompt delete NAME\n")

    async def timezone(self, arg: str) -> None:
        if arg.strip():
            await self.stories.set_timezone(self.user, arg.strip())
        self.write(f"Your timezone: {await self.stories.timezone(self.user)}\n")

    async def narrate(self, arg: str) -> None:
        story_id = _story_id(arg)
        parts = await self.stories.narrate(self.user, story_id)
        folder = self.engine.user_files(self.user) / "voice"  # forget removes it
        folder.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(parts, 1):
            suffix = f"-part{i}" if len(parts) > 1 else ""
            path = folder / f"story-{story_id}{suffix}.ogg"
            path.write_bytes(part.ogg)
            self.write(f"Story #{story_id} read aloud: {path} ({part.duration_s:.0f} s)\n")


def overlay(base: StoryRequest, given: StoryRequest) -> StoryRequest:
    """``base`` with the options the user gave explicitly (those not at their default)."""
    default = StoryRequest()
    changes = {k: v for k, v in given.__dict__.items() if v != getattr(default, k)}
    return StoryRequest(**{**base.__dict__, **changes})


def _story_id(arg: str) -> int:
    text = arg.strip().lstrip("#")
    if not text.isdigit():
        raise InputError("bad id", user_message="Give the story's number, like /open 12.")
    return int(text)
