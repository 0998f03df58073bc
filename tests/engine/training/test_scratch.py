"""`doppel train scratch` and the three-command flow: prepare, scratch, use, then /story."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from llama_cpp import Llama

from bot.cli import main
from engine.config import load_config
from engine.engine import UserRef
from engine.stories.options import StoryRequest
from engine.stories.prompt import story_prompt
from engine.training.outputs import read_report
from engine.training.tokenizer import BOS, load_tokenizer
from tests.engine.training.conftest import story_on, tiny_config


def test_loss_falls_for_the_transformer_and_the_lstm_baseline(scratch_run: Path) -> None:
    r = read_report(scratch_run)
    for name in ("transformer", "lstm"):
        m = r[name]
        assert m["steps"] == 90 and m["stopped"] == "step budget"
        # untrained: about ln(vocab); trained well below it on held-out stories
        assert m["untrained_val_loss"] > math.log(r["vocab"]) - 0.5
        assert m["best_val_loss"] < m["untrained_val_loss"] - 1.0
        assert m["tokens_per_s"] > 0
    history = json.loads((scratch_run / "runs" / "llama" / "history.json").read_text())
    assert [p["step"] for p in history] == sorted(p["step"] for p in history)
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert 150 < r["transformer"]["parameters"] < 200_000


def test_exported_gguf_loads_in_llama_cpp_tokenizes_like_training_and_generates(
        scratch_run: Path) -> None:
    gguf = scratch_run / "model.gguf"
    llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=2, verbose=False)
    assert llm.metadata["general.architecture"] == "llama"
    assert "chat_template" in " ".join(llm.metadata)
    prompt = story_prompt(StoryRequest(genre="animals", characters="Lily, Max",
                                       prompt="a lost ball in the park"))
    sp = load_tokenizer(scratch_run / "tokenizer")
    # llama.cpp splits text exactly as the trainer did: prompts, stories, other scripts
    hindi = "एक छोटी लड़की  ने 12 पतंगें उड़ाईं।\n\nफिर?"
    for text in (prompt, hindi, "  Two  spaces,\ttabs and 3.14 numbers!\n", "[STORY] Once"):
        assert llm.tokenize(text.encode(), add_bos=True) == [BOS, *sp.encode(text)], text
    out: Any = llm(prompt, max_tokens=24, temperature=0)
    text = out["choices"][0]["text"]
    assert out["usage"]["completion_tokens"] > 3 and text.strip()


def test_use_makes_it_the_story_model_and_story_runs_on_it(
        tmp_path: Path, scratch_run: Path) -> None:
    cfg = tiny_config(tmp_path, "\n[stories]  # story model\n# a comment that stays\n"
                                f'model_path = "{scratch_run / "hf" / "config.json"}"\n'
                                "n_gpu_layers = 0\n")
    assert main(["--config", str(cfg), "train", "use", str(scratch_run)]) == 0
    text = cfg.read_text()
    assert "# a comment that stays" in text and text.count("model_path =") == 1
    config = load_config(cfg)
    assert config.stories.model_path == (scratch_run / "model.gguf").resolve()

    text, chat = story_on(config, UserRef("telegram", "7"))
    assert text.strip()
    assert not chat.prompts  # the chat model wrote nothing: the story model did


def test_eval_report_trained_beats_untrained_with_all_decodings(scratch_run: Path,
                                                                 dataset: Path) -> None:
    cfg = scratch_run.parent / "config.toml"
    assert main(["--config", str(cfg), "train", "eval", str(scratch_run), str(dataset),
                 "--samples", "2", "--max-new-tokens", "24"]) == 0
    r = json.loads((scratch_run / "eval" / "eval_report.json").read_text())
    models = r["models"]
    assert r["trained_beats_baseline"] is True
    assert models["trained"]["perplexity"] < models["untrained"]["perplexity"] / 5
    assert models["trained"]["perplexity"] < models["lstm baseline"]["perplexity"] * 3
    for name in ("trained", "untrained"):
        assert set(models[name]["decoding"]) == {"greedy", "beam", "top-k", "top-p", "served"}
        for d in models[name]["decoding"].values():
            assert 0 <= d["bleu"] <= 100 and 0 <= d["distinct_2"] <= 1
    assert len(r["samples"]) == 2 and r["samples"][0]["trained"]["greedy"]
    png = (scratch_run / "eval" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "## Story 1" in (scratch_run / "eval" / "samples.md").read_text()


def test_resume_of_a_finished_run_trains_nothing_more(train_home: Path, dataset: Path,
                                                      scratch_run: Path) -> None:
    before = read_report(scratch_run)
    assert main(["--config", str(train_home / "config.toml"), "train", "scratch",
                 str(dataset), "-o", str(scratch_run), "--resume", "--no-export",
                 "--no-baseline"]) == 0
    after = read_report(scratch_run)
    assert after["transformer"]["steps"] == before["transformer"]["steps"]
    assert after["transformer"]["best_val_loss"] == before["transformer"]["best_val_loss"]


@pytest.mark.parametrize(("args", "message"), [
    (["scratch", "{missing}", "-o", "{out}"], "is missing: point at a folder made by"),
    (["eval", "{out}", "{dataset}"], "is not a training output folder"),
    (["lora", "--base", "{missing}", "{dataset}", "-o", "{out}"], "does not exist"),
    (["use", "{out}"], "is not a training output folder"),
    (["scratch", "{dataset}", "-o", "{out}", "--device", "cuda"], "sees no CUDA GPU"),
    (["lora", "--base", "{missing}", "{dataset}", "-o", "{out}", "--resume"],
     "--resume: no checkpoint under"),
])
def test_clear_errors(tmp_path: Path, dataset: Path, args: list[str], message: str,
                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_config(tmp_path)
    paths = {"missing": str(tmp_path / "nope"), "out": str(tmp_path / "out"),
             "dataset": str(dataset)}
    assert main(["--config", str(cfg), "train", *[a.format(**paths) for a in args]]) == 2
    assert message in capsys.readouterr().err
