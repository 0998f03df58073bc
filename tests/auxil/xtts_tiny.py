"""A tiny, randomly initialised XTTS-v2 checkpoint directory for tests (needs the xtts extra).

Real XTTS weights cannot be downloaded here, so the loading, conditioning and streaming code
is exercised on a model of the real architecture with a 2-layer, 64-wide GPT (the HiFiGAN
decoder and speaker encoder cannot be shrunk from config). Its output is noise of the right
shape and rate. ``gpt_max_audio_tokens`` is small, so every sentence is ~1.7 s of audio.
"""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "hello world, this is a tiny voice model for tests.",
    "the quick brown fox jumps over the lazy dog!",
    "it's twenty dollars; call me at noon? yes.",
    "a persona speaks in the voice of the person it was cloned from.",
]


def build_tiny_xtts(directory: Path, *, seed: int = 0) -> Path:
    """Write config.json, vocab.json, model.pth and speakers_xtts.pth into ``directory``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    directory.mkdir(parents=True, exist_ok=True)
    config = XttsConfig()
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{code}]" for code in
                                                             config.languages]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=256, special_tokens=specials,
                                  initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"
                                                        "0123456789.,!?'\"-:;()"))
    tokenizer.train_from_iterator(SENTENCES, trainer)
    vocab = directory / "vocab.json"
    tokenizer.save(str(vocab))

    args = config.model_args
    args.gpt_layers, args.gpt_n_model_channels, args.gpt_n_heads = 2, 64, 4
    args.decoder_input_dim = 64
    args.gpt_use_perceiver_resampler = True
    args.gpt_num_audio_tokens, args.gpt_start_audio_token, args.gpt_stop_audio_token = (
        1026, 1024, 1025)
    args.gpt_max_audio_tokens = 40  # a random GPT never stops early: keep sentences short
    args.gpt_number_text_tokens = tokenizer.get_vocab_size()
    args.gpt_start_text_token = tokenizer.token_to_id("[START]")
    args.gpt_stop_text_token = tokenizer.token_to_id("[STOP]")
    args.tokenizer_file = str(vocab)
    config.save_json(str(directory / "config.json"))

    torch.manual_seed(seed)
    model = Xtts(config)
    model.init_models()
    torch.save({"model": model.state_dict()}, directory / "model.pth")
    torch.save({}, directory / "speakers_xtts.pth")
    return directory
