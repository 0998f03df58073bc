"""The terminal adapter: ``doppel chat`` and the fallback of ``doppel run``."""

from bot.console.adapter import ConsoleAdapter

__all__ = ["ConsoleAdapter"]
