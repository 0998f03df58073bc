"""`doppel train lora` on a tiny randomly initialised Llama: curriculum stages, GGUF LoRA
and merged exports that llama.cpp loads, the engine serving /story with the adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_cpp import Llama

from bot.cli import main
from engine.config import load_config
from engine.engine import UserRef
from engine.training import converters
from engine.training.outputs import read_report
from tests.engine.training.conftest import story_on, tiny_config

PROMPT = "[GENRE] animals\n[CHARACTERS] Lily\n[PROMPT] a lost ball\n[STORY]"


@pytest.fixture(scope="session")
def lora_run(train_home: Path, dataset: Path, tiny_base: tuple[Path, Path]) -> Path:
    base, base_gguf = tiny_base
    out = train_home / "lora"
    assert main(["--config", str(train_home / "config.toml"), "train", "lora", "--base",
                 str(base), str(dataset), "-o", str(out), "--base-gguf", str(base_gguf),
                 "--outtype", "f32"]) == 0
    return out


def greedy(llm: Llama, n: int = 16) -> list[int]:
    llm.reset()  # type: ignore[no-untyped-call]
    out: Any = llm(PROMPT, max_tokens=n, temperature=0)
    return llm.tokenize(out["choices"][0]["text"].encode(), add_bos=False)


def test_curriculum_stages_run_in_order_and_lower_the_loss(lora_run: Path) -> None:
    r = read_report(lora_run)
    assert [s["name"] for s in r["stages"]] == ["general stories", "genre-conditioned",
                                                "age and language"]
    assert r["stages"][0]["fields"] == [] and "age" in r["stages"][2]["fields"]
    assert all(s["steps"] > 0 for s in r["stages"])
    assert r["final_val_loss"] < r["base_val_loss"] - 0.25  # only the adapter learns
    assert r["trainable_parameters"] < r["parameters"] / 3
    assert sorted(p.name for p in (lora_run / "runs").iterdir()) == [
        "1-general-stories", "2-genre-conditioned", "3-age-and-language"]


def test_gguf_lora_loads_on_the_base_gguf_and_changes_its_output(
        lora_run: Path, tiny_base: tuple[Path, Path]) -> None:
    _, base_gguf = tiny_base
    adapter = lora_run / "story-lora.gguf"
    plain = Llama(model_path=str(base_gguf), n_ctx=128, n_threads=2, verbose=False)
    tuned = Llama(model_path=str(base_gguf), lora_path=str(adapter), n_ctx=128, n_threads=2,
                  verbose=False)
    assert greedy(plain) != greedy(tuned)


def test_use_then_story_runs_on_base_plus_adapter(tmp_path: Path, lora_run: Path,
                                                  tiny_base: tuple[Path, Path]) -> None:
    cfg = tiny_config(tmp_path)
    assert main(["--config", str(cfg), "train", "use", str(lora_run)]) == 0
    config = load_config(cfg)
    assert config.stories.model_path == tiny_base[1].resolve()
    assert config.stories.lora_path == (lora_run / "story-lora.gguf").resolve()
    text, chat = story_on(config, UserRef("discord", "5"))
    assert text.strip() and not chat.prompts


def test_merged_export_matches_base_plus_adapter(tmp_path: Path, train_home: Path,
                                                 dataset: Path,
                                                 tiny_base: tuple[Path, Path]) -> None:
    base, base_gguf = tiny_base
    out = tmp_path / "merged-run"
    assert main(["--config", str(train_home / "config.toml"), "train", "lora", "--base",
                 str(base), str(dataset), "-o", str(out), "--merge", "--steps", "15",
                 "--outtype", "f32"]) == 0
    assert json.loads((out / "doppel-model.json").read_text())["kind"] == "merged"
    adapter = converters.lora_to_gguf(out / "adapter", base, tmp_path / "a.gguf",
                                      outtype="f32")
    merged = Llama(model_path=str(out / "model.gguf"), n_ctx=128, n_threads=2, verbose=False,
                   logits_all=True)
    layered = Llama(model_path=str(base_gguf), lora_path=str(adapter), n_ctx=128,
                    n_threads=2, verbose=False, logits_all=True)
    tokens = merged.tokenize(PROMPT.encode())
    for llm in (merged, layered):
        llm.eval(tokens)
    a, b = merged.scores[len(tokens) - 1], layered.scores[len(tokens) - 1]
    assert np.allclose(a, b, atol=1e-3), float(np.abs(a - b).max())


def test_resume_skips_finished_stages_and_eval_shows_the_gain(
        train_home: Path, dataset: Path, lora_run: Path, tiny_base: tuple[Path, Path]) -> None:
    before = read_report(lora_run)
    assert main(["--config", str(train_home / "config.toml"), "train", "lora", "--base",
                 str(tiny_base[0]), str(dataset), "-o", str(lora_run), "--resume",
                 "--no-export"]) == 0
    after = read_report(lora_run)
    assert [s["steps"] for s in after["stages"]] == [s["steps"] for s in before["stages"]]
    assert after["final_val_loss"] == pytest.approx(before["final_val_loss"], abs=1e-4)
    assert main(["--config", str(train_home / "config.toml"), "train", "eval", str(lora_run),
                 str(dataset), "--samples", "1", "--max-new-tokens", "12"]) == 0
    r = json.loads((lora_run / "eval" / "eval_report.json").read_text())
    assert r["trained_beats_baseline"] is True
    assert r["models"]["fine-tuned"]["perplexity"] < r["models"]["base"]["perplexity"]


def test_qlora_without_cuda_says_what_it_needs(tmp_path: Path, dataset: Path,
                                               tiny_base: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_config(tmp_path)
    assert main(["--config", str(cfg), "train", "lora", "--base", str(tiny_base[0]),
                 str(dataset), "-o", str(tmp_path / "q"), "--qlora"]) == 2
    assert "--qlora needs a CUDA GPU" in capsys.readouterr().err


def test_a_gguf_base_is_dequantized_once_and_its_adapter_applies_to_that_gguf(
        tmp_path: Path, train_home: Path, dataset: Path, tiny_base: tuple[Path, Path]) -> None:
    _, base_gguf = tiny_base
    out = tmp_path / "from-gguf"
    args = ["--config", str(train_home / "config.toml"), "train", "lora", "--base",
            str(base_gguf), str(dataset), "-o", str(out), "--steps", "5", "--outtype", "f32"]
    assert main(args) == 0
    manifest = json.loads((out / "doppel-model.json").read_text())
    assert manifest["base_gguf"] == str(base_gguf.resolve())
    assert (out / "base-hf" / "config.json").is_file()
    made = (out / "base-hf" / "model.safetensors").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert (out / "base-hf" / "model.safetensors").stat().st_mtime_ns == made  # reused
    tuned = Llama(model_path=str(base_gguf), lora_path=str(out / "story-lora.gguf"),
                  n_ctx=128, n_threads=2, verbose=False)
    assert greedy(tuned)


@pytest.mark.model
def test_lora_on_the_bundled_chat_model_is_served_by_llama_cpp(tmp_path: Path,
                                                               dataset: Path) -> None:
    """A real base: SmolLM2-135M-Instruct, dequantized from the bundled GGUF; a few steps."""
    from engine.llm.llama_cpp import bundled_model_path

    cfg = tiny_config(tmp_path, "")
    text = cfg.read_text().replace("batch_size = 16", "batch_size = 4").replace(
        "eval_batches = 8", "eval_batches = 2")
    cfg.write_text(text.replace('stages = [\n  { name = "general stories", fields = [], '
                                'epochs = 1 },\n', 'stages = [\n'))
    out = tmp_path / "smol-lora"
    assert main(["--config", str(cfg), "train", "lora", "--base", "bundled", str(dataset),
                 "-o", str(out), "--steps", "3"]) == 0
    r = read_report(out)
    assert [s["steps"] for s in r["stages"]] == [3, 3]
    assert r["parameters"] > 130_000_000 and r["trainable_parameters"] < 5_000_000
    assert main(["--config", str(cfg), "train", "use", str(out)]) == 0
    config = load_config(cfg)
    assert config.stories.model_path == bundled_model_path().resolve()
    tuned = Llama(model_path=str(bundled_model_path()), lora_path=str(config.stories.lora_path),
                  n_ctx=256, n_threads=2, verbose=False)
    assert greedy(tuned)
