"""What the app needs from every adapter."""

from __future__ import annotations

from typing import Protocol


class Adapter(Protocol):
    name: str
    ends_run: bool
    """Its ending on its own ends the process (the console: its user quit)."""

    async def start(self) -> None:
        """Connect and begin handling events; returns once running."""

    async def pause(self) -> None:
        """Stop taking new events (shutdown begins); running turns go on."""

    async def stop(self) -> None:
        """Finish sending and close the connection (after the engine ended its jobs)."""

    async def wait_closed(self) -> None:
        """Returns when the adapter ended on its own (console: the user quit)."""

    def interrupt(self) -> bool:
        """Ctrl-C was pressed: return True if the adapter handled it (e.g. cancelled a reply)."""
