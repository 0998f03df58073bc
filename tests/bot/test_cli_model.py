"""``doppel model list`` and ``doppel model pull`` against a stand-in of the Hugging Face
hub's file API on loopback (``HF_ENDPOINT``): progress, resume after a dropped connection,
the sha256 check, gated repositories, and config.toml pointed at the new model."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from engine.config import load_config
from tests.auxil.hf_hub import HubStandIn
from tests.conftest import ROOT

REPO = "bartowski/SmolLM2-1.7B-Instruct-GGUF"
FILE = "SmolLM2-1.7B-Instruct-Q4_K_M.gguf"
DATA = random.Random(1).randbytes(3 * 1024 * 1024 + 123)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    files = {f"{REPO}/{FILE}": DATA, "google/gemma-gated/model.gguf": DATA[:1000]}
    with HubStandIn(files, gated=frozenset({"google/gemma-gated"})) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                    f'[personas]\ndir = "{ROOT / "persona_data"}"\n\n'
                    "[llm]\n# my own note about the model\nmax_tokens = 64\n")
    return path


def test_list_recommends_models_by_hardware(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(cfg), "model", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-1.7b" in out and "laptop CPU" in out and "24 GB GPU" in out


def test_pull_resumes_after_a_dropped_connection_checks_and_sets_the_model(
        hub: HubStandIn, cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub.cut_after = 1024 * 1024
    assert main(["--config", str(cfg), "model", "pull", "smollm2-1.7b"]) == 1
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to resume" in err
    part = tmp_path / "data" / "models" / f"{FILE}.part"
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)

    assert main(["--config", str(cfg), "model", "pull", "smollm2-1.7b"]) == 0
    out, err = capsys.readouterr()
    assert hub.ranges[-1] == f"bytes={kept}-"  # resumed, not started over
    model = tmp_path / "data" / "models" / FILE
    assert hashlib.sha256(model.read_bytes()).digest() == hashlib.sha256(DATA).digest()
    assert not part.exists() and "sha256 checked" in out
    assert f"/ {len(DATA) / 1e6:.1f} MB  100%" in err  # progress
    assert load_config(cfg).llm.model_path == model.resolve()
    assert "# my own note about the model" in cfg.read_text()  # the rest stays as written

    # Pulling again finds the checked file and fetches nothing.
    downloads = len(hub.ranges)
    assert main(["--config", str(cfg), "model", "pull", f"{REPO}:{FILE}", "--no-set"]) == 0
    assert len(hub.ranges) == downloads


def test_a_damaged_download_is_not_kept(hub: HubStandIn, cfg: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    hub.corrupt = True
    assert main(["--config", str(cfg), "model", "pull", "smollm2-1.7b"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert list((tmp_path / "data" / "models").iterdir()) == []
    assert load_config(cfg).llm.model_path is None


def test_gated_repositories_need_a_token_and_unknown_names_say_what_exists(
        hub: HubStandIn, cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    gated = "google/gemma-gated:model.gguf"
    assert main(["--config", str(cfg), "model", "pull", gated, "--no-set"]) == 1
    assert "HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert main(["--config", str(cfg), "model", "pull", gated, "--no-set"]) == 0
    assert (tmp_path / "data" / "models" / "model.gguf").read_bytes() == DATA[:1000]
    assert main(["--config", str(cfg), "model", "pull", "gpt-5"]) == 1
    assert "smollm2-1.7b" in capsys.readouterr().err
    assert main(["--config", str(cfg), "model", "pull", "bartowski/none:x.gguf"]) == 1
    assert "not found" in capsys.readouterr().err
