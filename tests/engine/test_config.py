"""config.toml and persona.toml validation: one clear line naming the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import load_settings
from engine.config import Config, config_from_dict, load_config
from engine.errors import ConfigError
from engine.personas import PersonaRegistry, load_persona
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "persona_data").mkdir(exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    """The one line a whole process's start says (the engine's tables and the adapters')."""
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'config.toml'}:")
    return message


def test_shipped_config_loads_and_resolves_paths() -> None:
    settings = load_settings(ROOT / "config.toml")
    cfg = settings.engine
    assert isinstance(cfg, Config)
    assert cfg.personas.dir == ROOT / "persona_data"
    assert cfg.storage.data_dir == ROOT / "data"
    assert cfg.llm.backend == "llama_cpp"
    assert cfg.llm.model_path is None  # the bundled model
    assert settings.discord.token_env == "DISCORD_TOKEN"
    assert settings.api.web_app and settings.api.url == "http://127.0.0.1:8000"
    assert cfg.storage.effective_database_url.startswith("sqlite+aiosqlite:///")


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.engine.queue_size == 64
    assert cfg.llm.n_ctx == 2048


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[llm]\nn_ctxx = 4096\n", "config.toml: [llm] unknown key 'n_ctxx'"),
        ("[llm]\nn_ctx = 'big'\n", "config.toml: [llm] n_ctx must be an integer >= 256, got 'big'"),
        ("[llm]\nn_ctx = 16\n", "[llm] n_ctx must be an integer >= 256, got 16"),
        ("[llm]\ntemperature = -1\n", "[llm] temperature must be a number between 0 and 5"),
        ("[llm]\nbackend = 'gpt'\n",
         "[llm] backend must be one of 'llama_cpp', 'openai', 'redis', got 'gpt'"),
        ("[engine]\nqueue_size = true\n", "[engine] queue_size must be an integer"),
        ("[discord]\nallowed_users = ['me']\n", "[discord] allowed_users[0] must be an integer"),
        ("[discord]\ntoken = 'abc'\n", "[discord] unknown key 'token'"),
        ("[discord]\ngateway_url = 'http://x'\n", "[discord] gateway_url must be a ws(s)://"),
        ("[telegram]\napi_base = 'ftp://x'\n", "[telegram] api_base must be an http(s) URL"),
        ("[api]\nport = 70000\n", "[api] port must be an integer"),
        ("[api]\nweb = true\n", "[api] unknown key 'web'"),
        ("[train.lora]\nstages = [{ name = 'a', fields = ['mood'] }]\n",
         "[train.lora] stages[0] fields: unknown 'mood'"),
        ("[train.lora]\nstages = [{ name = 'a', epoch = 2 }]\n",
         "[train] [lora] stages[0] unknown key 'epoch'"),
        ("[train.scratch]\nn_embd = 100\nn_head = 6\n", "n_embd must be a multiple of n_head"),
        ("[train]\ndevice = 'tpu'\n", "[train] device must be one of 'auto', 'cpu', 'cuda'"),
        ("[voice]\nreply_mode = 'shout'\n", "[voice] reply_mode must be one of"),
        ("[lm]\nn_ctx = 1\n", "config.toml: unknown key 'lm'"),
        ("llm = 3\n", "config.toml: [llm] must be a table"),
        ("[llm]\nmodel_path = 'nope.gguf'\n", "[llm] model_path points to"),
        ("[personas]\ndir = 'missing'\n", "[personas] dir points to"),
        ("[llm\n", "config.toml: not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "config.toml")


def test_cli_reports_config_error_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[engine]\nchat_timeout_s = 'soon'\n")
    assert main(["--config", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"doppel: {path}: [engine] chat_timeout_s must be a number >= 1, got 'soon'"
    ]


def test_cli_check_accepts_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "config.toml"), "check"]) == 0
    out = capsys.readouterr().out
    assert "allen" in out and "storyteller" in out and "OK" in out


def test_shipped_personas_load() -> None:
    registry = PersonaRegistry.load(ROOT / "persona_data", "allen")
    assert registry.names() == ["allen", "storyteller"]
    allen = registry.get("Allen")
    assert allen.display_name == "Phillip Allen"
    assert "Phillip" in allen.system_message()
    assert len(allen.source_files()) == 60
    assert all(p.suffix == ".eml" for p in allen.source_files())


def test_persona_errors_name_file_and_key(tmp_path: Path) -> None:
    d = tmp_path / "bob"
    d.mkdir()
    (d / "persona.toml").write_text("[persona]\ndisplay_name = 'Bob'\nmood = 'grumpy'\n")
    with pytest.raises(ConfigError, match=r"bob/persona.toml: \[persona\] unknown key 'mood'"):
        load_persona(d)
    (d / "persona.toml").write_text("[persona]\ndescription = 'no name'\n")
    with pytest.raises(ConfigError, match=r"\[persona\] display_name is required"):
        load_persona(d)
    (d / "persona.toml").write_text(
        "[persona]\ndisplay_name = 'Bob'\n[voice]\nreference_clips = ['clip.wav']\n"
    )
    with pytest.raises(ConfigError, match=r"\[voice\] reference_clips: .*clip.wav is not a file"):
        load_persona(d)


def test_unknown_default_persona_is_a_config_error(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "persona_data", tmp_path / "p")
    with pytest.raises(ConfigError, match=r"\[personas\] default is 'nobody'.*allen, storyteller"):
        PersonaRegistry.load(tmp_path / "p", "nobody")


def test_database_password_comes_from_the_environment_and_is_masked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from engine.storage.db import Database

    monkeypatch.setenv("DB_PW", "s3cret!")
    cfg = config_from_dict({"storage": {"database_url": "postgresql+asyncpg://doppel@db/doppel",
                                        "password_env": "DB_PW"},
                            "personas": {"dir": str(ROOT / "persona_data")}}, base_dir=tmp_path)
    url = cfg.storage.effective_database_url
    assert url == "postgresql+asyncpg://doppel:s3cret%21@db/doppel"
    assert "s3cret" not in Database(url).safe_url
