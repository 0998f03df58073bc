"""Preference training (DPO) on the pairs users' 👍/👎 gave: a tiny random Llama moves
towards the liked outputs (the log-probability margin grows), through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bot.cli import main
from engine.errors import ConfigError
from engine.training.preference import dpo_loss, read_pairs

PAIRS = [
    {"persona": "allen", "prompt": "How was your week?",
     "chosen": "Busy but good. The gas desk kept me on my toes.",
     "rejected": "I do not know."},
    {"persona": "allen", "prompt": "Did the rent come in?",
     "chosen": "Yes, the rent roll came in on Monday.",
     "rejected": "Maybe. Who knows."},
    {"persona": "allen", "prompt": "Can you send the contract?",
     "chosen": "Sure, I will send it over this afternoon.",
     "rejected": "No."},
]


def test_dpo_loss_is_log_two_at_the_start_and_falls_as_the_liked_one_rises() -> None:
    zero = torch.tensor([0.0])
    assert float(dpo_loss(zero, zero, zero, zero, 0.1)) == pytest.approx(0.6931, abs=1e-4)
    assert float(dpo_loss(torch.tensor([5.0]), zero, zero, zero, 0.1)) < 0.6931


def test_pairs_must_be_whole(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(ConfigError, match="needs prompt, chosen and rejected"):
        read_pairs(bad)
    bad.write_text("")
    with pytest.raises(ConfigError, match="no preference pairs"):
        read_pairs(bad)


def test_prefer_moves_the_model_towards_the_liked_outputs(
        train_home: Path, tiny_base: tuple[Path, Path], tmp_path: Path) -> None:
    pairs = tmp_path / "preferences.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "prefer"
    assert main(["--config", str(train_home / "config.toml"), "train", "prefer", str(pairs),
                 "--base", str(tiny_base[0]), "-o", str(out), "--steps", "30"]) == 0
    report = json.loads((out / "preference_report.json").read_text())
    assert report["pairs"] == 3 and report["loss_first"] == pytest.approx(0.6931, abs=1e-3)
    assert report["loss_last"] < report["loss_first"]
    assert report["margin_after"] > report["margin_before"] + 1.0
    assert report["reward_accuracy"] == 1.0 and report["reward_margin"] > 1.0
    assert (out / "preference-lora.gguf").stat().st_size > 0
