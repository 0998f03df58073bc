"""``doppel train use RUN``: make a trained model the ``/story`` model in ``config.toml``.

Only the ``model_path``/``lora_path`` lines of the ``[stories]`` table change; comments and
everything else stay as written. The result is loaded and validated before it is kept.
"""

from __future__ import annotations

from pathlib import Path

from engine.config_edit import set_paths
from engine.errors import InputError
from engine.training.outputs import read_manifest


def story_paths(run: Path) -> dict[str, Path | None]:
    """``model_path`` and ``lora_path`` for a training output folder."""
    m = read_manifest(run)
    if m["kind"] in ("scratch", "merged"):
        if not m.get("model"):
            raise InputError("not exported", user_message=(
                f"{run} has no GGUF (trained with --no-export): run the training again "
                "without --no-export."))
        return {"model_path": (run / m["model"]).resolve(), "lora_path": None}
    base_gguf = Path(m["base_gguf"]).resolve() if m.get("base_gguf") else None
    return {"model_path": base_gguf, "lora_path": (run / m["lora"]).resolve()}


def set_story_model(config_file: Path, paths: dict[str, Path | None]) -> None:
    set_paths(config_file, "stories", paths)
