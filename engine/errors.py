"""The engine's exception types. Adapters catch these by meaning and show ``user_message``."""

from __future__ import annotations


class DoppelError(Exception):
    """Base class. ``user_message`` is a short line safe to show to an end user."""

    user_message = "Something went wrong on my side. Please try again."

    def __init__(self, message: str = "", *, user_message: str | None = None) -> None:
        super().__init__(message or self.user_message)
        if user_message is not None:
            self.user_message = user_message


class ConfigError(DoppelError):
    """A configuration file is invalid; the message names the file and the key."""

    user_message = "Doppel is misconfigured; the operator has to fix the configuration."


class SchedulerError(DoppelError):
    """Base for refusals and failures of queued model work."""


class QueueFull(SchedulerError):
    user_message = "I'm busy right now. Please try again in a minute."


class UserQueueFull(SchedulerError):
    user_message = "You already have requests waiting. Let them finish, or /cancel them."


class JobCancelled(SchedulerError):
    user_message = "Cancelled."


class JobTimeout(SchedulerError):
    user_message = "That took too long and was stopped. Please try again, perhaps shorter."

    def __init__(self, message: str = "", *, user_message: str | None = None,
                 partial: object = None) -> None:
        super().__init__(message, user_message=user_message)
        self.partial = partial
        """What the job returned once told to stop (a story's text so far), if anything."""


class SchedulerStopped(SchedulerError):
    user_message = "Doppel is shutting down. Please try again shortly."


class ModelError(DoppelError):
    """The model backend failed to load or to generate."""

    user_message = "The language model failed on this request. Please try again."


class InputError(DoppelError):
    """The user's input was rejected; ``user_message`` says why."""


def shown(text: str, limit: int = 40) -> str:
    """Something a person sent, as a message may quote it: one line, at most ``limit``
    characters (a 10 MB name is not sent back)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "…"


class PersonaNotFound(InputError):
    def __init__(self, name: str, available: list[str]) -> None:
        names = ", ".join(available) or "none"
        message = f"There is no persona called '{shown(name)}'. Available: {names}."
        super().__init__(message, user_message=message)
        self.name = name
        self.available = available


class UserNotFound(InputError):
    """Nothing is stored about the user (export of someone who never wrote)."""

    user_message = "Nothing is stored about you yet."

    def __init__(self, who: str) -> None:
        super().__init__(f"no user {who}")
        self.who = who


class FeatureUnavailable(DoppelError):
    """The feature is not set up on this installation; ``user_message`` says what it needs."""

    user_message = "That isn't available here."


class NotAllowed(DoppelError):
    """The user may not do this (an admin or the persona's owner may)."""

    user_message = "Only an admin or the persona's owner can do that."
