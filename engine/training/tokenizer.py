"""A BPE tokenizer trained on the story corpus (SentencePiece, the Llama tokenizer format).

SentencePiece's BPE model is what llama.cpp reads natively (``tokenizer.model``): the GGUF
converter takes it without a pre-tokenizer table, and llama.cpp tokenizes at serving time
exactly as training did (a test checks it token for token). Normalisation is off and unknown
characters fall back to bytes, so newlines and any script (Devanagari included) survive the
round trip. The ``[TAG]`` markers are ordinary pieces, not user-defined symbols: llama.cpp adds
a space after every user-defined token, which SentencePiece does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

MODEL_FILE = "tokenizer.model"
UNK, BOS, EOS = 0, 1, 2
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ message['content'] }}{% endif %}{% endfor %}"
)
"""Story models are completion models: the ``/story`` prompt is the whole input (the system
line is for instruction-tuned chat models)."""


def _lines(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                yield line


def train_tokenizer(texts: Iterable[str], out_dir: Path,
                    vocab_size: int) -> spm.SentencePieceProcessor:
    out_dir.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_lines(texts), model_prefix=str(out_dir / "tokenizer"),
        model_type="bpe", vocab_size=vocab_size, hard_vocab_limit=False,
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, split_by_unicode_script=False,
        unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=-1, num_threads=2,
        minloglevel=2,
    )
    (out_dir / "tokenizer.vocab").unlink(missing_ok=True)
    return load_tokenizer(out_dir)


def load_tokenizer(model_dir: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_dir / MODEL_FILE))


def write_hf_files(model_dir: Path) -> None:
    """``tokenizer_config.json`` beside ``tokenizer.model``: the special tokens and the
    completion-style chat template the GGUF converter carries into the model."""
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
        "chat_template": CHAT_TEMPLATE,
    }, indent=2), encoding="utf-8")


def encode_story(sp: spm.SentencePieceProcessor, text: str) -> list[int]:
    """``<s> text </s>`` as token ids."""
    return [BOS, *sp.encode(text), EOS]
