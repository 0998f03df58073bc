"""A tiny, randomly initialised Stable Diffusion pipeline directory for tests.

Real text-to-image weights are the operator's to bring and are never downloaded here, so
the loading and drawing code is exercised on a pipeline of the real architecture (UNet,
VAE, CLIP text encoder, a byte-level CLIP tokenizer written here) at a few thousand
parameters. Its pictures are noise of the right size. ``flag_everything`` adds diffusers'
own safety checker with thresholds that flag every picture, as a real checker flags an
unsafe one.
"""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (the base vocabulary)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def build_tiny_diffusion(directory: Path, *, flag_everything: bool = False) -> Path:
    """Write a diffusers StableDiffusionPipeline into ``directory``; returns it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = list(_bytes_to_unicode().values())
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
        pad_token_id=1, projection_dim=8))
    work = directory / "_tokenizer"
    work.mkdir(parents=True, exist_ok=True)
    (work / "vocab.json").write_text(json.dumps(vocab))
    (work / "merges.txt").write_text("#version: 0.2\n")  # no merges: one token a byte
    tokenizer = CLIPTokenizer(str(work / "vocab.json"), str(work / "merges.txt"),
                              model_max_length=77)
    checker = extractor = None
    if flag_everything:
        checker = StableDiffusionSafetyChecker(CLIPConfig(
            text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                         "num_attention_heads": 2},
            vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
            projection_dim=8))
        with torch.no_grad():  # any picture is closer than -1 to a concept: all flagged
            checker.concept_embeds_weights.fill_(-1.0)
        extractor = CLIPImageProcessor(size={"shortest_edge": 32},
                                       crop_size={"height": 32, "width": 32})
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=checker, feature_extractor=extractor,
        requires_safety_checker=flag_everything)
    out = directory / "model"
    pipe.save_pretrained(out)
    return out
