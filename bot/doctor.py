"""``doppel doctor``: what this installation has and lacks, one line a check.

It never changes anything (the database is opened read-only, nothing is migrated) and never
prints a secret: tokens are reported as set or not set, by the name of their variable.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.settings import Settings
from engine.config import Config

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Finding:
    status: str
    what: str
    detail: str


def _model_file(config: Config) -> Finding:
    from engine.llm.llama_cpp import bundled_model_path

    path = config.llm.model_path or bundled_model_path()
    if config.llm.backend == "openai":
        return Finding(OK, "LLM", f"OpenAI-compatible server at {config.llm.api_base}")
    if not path.is_file():
        return Finding(FAIL, "LLM", f"model file {path} is missing")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            return Finding(FAIL, "LLM", f"{path} is not a GGUF file")
    return Finding(OK, "LLM", f"{path.name} ({path.stat().st_size / 1e6:.0f} MB)")


def _gpu(config: Config) -> Finding:
    import llama_cpp

    offload = bool(llama_cpp.llama_supports_gpu_offload())
    try:
        import torch

        cuda = torch.cuda.is_available()
        name = torch.cuda.get_device_name(0) if cuda else ""
    except Exception:  # a broken CUDA install must not stop the report
        cuda, name = False, ""
    wants = config.llm.n_gpu_layers != 0
    status = FAIL if wants and not offload else OK
    return Finding(status, "GPU", f"torch CUDA: {name or 'no'}; llama.cpp GPU offload: "
                                  f"{'yes' if offload else 'no (CPU build)'}; n_gpu_layers = "
                                  f"{config.llm.n_gpu_layers}")


def _llama_build() -> Finding:
    from engine.llm.llama_cpp import built_with_openmp

    if built_with_openmp():
        return Finding(WARN, "llama.cpp", "built with OpenMP: beside the embedder's torch it "
                       "decodes at about half its pace; rebuild it without: `.ci/setup` (or "
                       "CMAKE_ARGS=\"-DGGML_OPENMP=OFF\" pip install --force-reinstall "
                       "--no-binary llama-cpp-python llama-cpp-python)")
    return Finding(OK, "llama.cpp", "built without OpenMP (its own thread pool)")


def _embedder(config: Config) -> Finding:
    from engine.memory.embed import bundled_embedding_model

    path = config.memory.embedding_model or bundled_embedding_model()
    ok = (path / "config.json").is_file()
    return Finding(OK if ok else FAIL, "embeddings", str(path) if ok else
                   f"{path} has no config.json")


def _voices(config: Config) -> list[Finding]:
    from engine.voice.stt import bundled_whisper_model
    from engine.voice.tts import bundled_piper_voice

    out = []
    piper = config.voice.piper_model or bundled_piper_voice()[0]
    out.append(Finding(OK if piper.is_file() else FAIL, "TTS (Piper)", str(piper)))
    whisper = config.voice.stt_model or bundled_whisper_model()
    out.append(Finding(OK if (whisper / "model.bin").is_file() else FAIL, "STT (Whisper)",
                       str(whisper)))
    from engine.voice.xtts import REQUIRED_FILES, xtts_available

    xdir = config.voice.xtts_model_dir
    if xdir is None:
        out.append(Finding(OK, "XTTS (cloning)", "off ([voice] xtts_model_dir not set)"))
    else:
        missing = [f for f in REQUIRED_FILES if not (xdir / f).is_file()]
        status = FAIL if missing or not xtts_available() else OK
        detail = (f"{xdir} lacks {', '.join(missing)}" if missing else
                  f"{xdir}" + ("" if xtts_available() else
                               "; the xtts extra is not installed (.ci/setup --xtts)"))
        out.append(Finding(status, "XTTS (cloning)", detail))
    return out


def _ffmpeg() -> Finding:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    try:
        version = subprocess.run([exe, "-version"], capture_output=True, text=True,
                                 timeout=20).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError) as exc:
        return Finding(FAIL, "ffmpeg", f"{exe} does not run: {exc}")
    return Finding(OK if "ffmpeg" in version else FAIL, "ffmpeg", version or exe)


def _database(config: Config) -> Finding:
    from alembic.script import ScriptDirectory

    from engine.storage.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    url = config.storage.effective_database_url
    if not url.startswith("sqlite"):
        return Finding(OK, "database", f"{url.split('@')[-1]} (not checked: not SQLite)")
    path = Path(url.split("///", 1)[1])
    if not path.is_file():
        return Finding(WARN, "database", f"{path} does not exist yet (made at first start)")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        return Finding(FAIL, "database", f"{path}: {exc}")
    revision = row[0] if row else None
    status = OK if check == "ok" and revision == head else (FAIL if check != "ok" else WARN)
    return Finding(status, "database", f"{path}: revision {revision} (newest {head}), "
                                       f"integrity {check}")


def _disk(config: Config) -> Finding:
    folder = config.storage.data_dir
    probe = folder if folder.exists() else folder.parent
    free = shutil.disk_usage(probe).free / 1e9
    writable = os.access(probe, os.W_OK)
    status = FAIL if not writable or free < 0.5 else (WARN if free < 2 else OK)
    return Finding(status, "data dir", f"{folder}: {free:.1f} GB free"
                                       + ("" if writable else ", NOT writable"))


def _training() -> Finding:
    """`doppel train`: the optional extra and llama.cpp's converters (a warning, not a fault:
    the bot runs without them)."""
    from importlib import metadata

    from engine.errors import ConfigError
    from engine.training import converters

    try:
        versions = ", ".join(f"{p} {metadata.version(p)}"
                             for p in ("transformers", "peft", "sentencepiece"))
    except metadata.PackageNotFoundError as exc:
        return Finding(WARN, "training", f"{exc.name} not installed (.ci/setup --train)")
    try:
        folder = converters.find()
    except ConfigError as exc:
        return Finding(WARN, "training", f"{versions}; {exc}")
    return Finding(OK, "training", f"{versions}; GGUF converters in {folder}")


LOCKS = Path(__file__).resolve().parent.parent / ".ci" / "locks"
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;([^\\]+))?")


def lock_drift(lock: Path) -> tuple[int, list[str]]:
    """How many packages ``lock`` pins for this Python, and those installed otherwise (or
    missing), as ``name installed (lock version)``."""
    from importlib import metadata

    from packaging.markers import Marker
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pinned, drift = 0, []
    for line in lock.read_text().splitlines():
        m = _PINNED.match(line)
        if m is None or (m.group(3) and not Marker(m.group(3).strip()).evaluate()):
            continue
        pinned += 1
        name, want = canonicalize_name(m.group(1)), m.group(2)
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name} missing (lock {want})")
            continue
        if Version(have) != Version(want):
            drift.append(f"{name} {have} (lock {want})")
    return pinned, drift


def _packages(prefix: Path | None = None, locks: Path = LOCKS) -> Finding:
    """Installed versions against the lock that ``.ci/setup`` installed this environment
    from (it names that lock in the environment's ``.doppel-lock``)."""
    marker = (prefix or Path(sys.prefix)) / ".doppel-lock"
    if not marker.is_file():
        return Finding(WARN, "packages", f"{sys.prefix} was not made by .ci/setup: no lock "
                                         "to compare with")
    lock = locks / Path(marker.read_text().strip()).name
    if not lock.is_file():
        return Finding(WARN, "packages", f"{lock} is missing")
    pinned, drift = lock_drift(lock)
    if drift:
        return Finding(WARN, "packages", f"{len(drift)} of {pinned} differ from "
                                         f"{lock.name}: {', '.join(drift[:8])}"
                                         f"{' ...' if len(drift) > 8 else ''}; run .ci/setup")
    return Finding(OK, "packages", f"{pinned} as locked in .ci/locks/{lock.name}")


def _tokens(settings: Settings) -> list[Finding]:
    out = []
    for name, env in (("Discord", settings.discord.token_env),
                      ("Telegram", settings.telegram.token_env),
                      ("HTTP API key", settings.api.key_env)):
        out.append(Finding(OK, name, f"{env} is {'set' if os.environ.get(env) else 'not set'}"))
    return out


def diagnose(settings: Settings) -> list[Finding]:
    config = settings.engine
    checks: list[Callable[[], Finding | list[Finding]]] = [
        lambda: _model_file(config), lambda: _gpu(config), _llama_build,
        lambda: _embedder(config),
        lambda: _voices(config), _ffmpeg, lambda: _database(config), lambda: _disk(config),
        _training, _packages, lambda: _tokens(settings)]
    findings: list[Finding] = []
    for check in checks:
        try:
            result = check()
        except Exception as exc:  # one broken check must not hide the others
            result = Finding(FAIL, getattr(check, "__name__", "check"), f"{exc}")
        findings.extend(result if isinstance(result, list) else [result])
    return findings


def report(settings: Settings, write: Callable[[str], None] = print) -> int:
    """Print the findings; 1 if anything failed."""
    findings = diagnose(settings)
    for f in findings:
        write(f"[{f.status:>4}] {f.what:<15} {f.detail}")
    failed = [f for f in findings if f.status == FAIL]
    write("All good." if not failed else f"{len(failed)} problem(s) found.")
    return 1 if failed else 0
