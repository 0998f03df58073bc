"""At start, build the memory of personas that list sources but have none yet, or finish
one a stopped start left partly read; how far each got is there for chat to tell."""

from __future__ import annotations

import logging

from engine.memory.catalog import files, reconcile
from engine.memory.ingest import Ingestor
from engine.memory.service import Memory, StoreDamaged
from engine.personas import Persona

log = logging.getLogger(__name__)


class BuildProgress:
    """How far a memory being built at start has got (the ingest's progress)."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def start(self, total_bytes: int) -> None:
        self.total = total_bytes

    def advance(self, n_bytes: int, docs: int) -> None:
        self.done += n_bytes

    @property
    def percent(self) -> int:
        return min(99, int(100 * self.done / self.total)) if self.total else 0


async def build_missing(memory: Memory, personas: list[Persona],
                        building: dict[str, BuildProgress]) -> None:
    """Build what is missing; ``building`` holds each persona's progress until it is done."""
    todo = []
    for persona in personas:
        try:
            await reconcile(memory, persona.name)  # vectors lost: their files read again
        except StoreDamaged as exc:
            log.error("%s", exc)  # chat goes on without memory; the line says what to do
            return
        known = await files(memory, persona.name)
        if persona.source_files() and (not known or not all(f.complete for f in known)):
            todo.append(persona)
            building[persona.name] = BuildProgress()
    for persona in todo:
        log.info("building %s's memory from %d source files (first start)",
                 persona.name, len(persona.source_files()))
        try:
            report = await Ingestor(memory, persona, progress=building[persona.name]
                                    ).run(persona.source_files())
        finally:
            del building[persona.name]
        log.info("%s", report.summary().replace("\n", ";"))
