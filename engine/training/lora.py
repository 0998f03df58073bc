"""``doppel train lora``: LoRA (QLoRA 4-bit on CUDA) fine-tunes of a local causal LM folder.

The curriculum in ``[train.lora] stages`` runs in order on one adapter (for example general
stories, then genre-conditioned, then age- and language-conditioned), each stage with its own
validation, early stopping and checkpoints, so ``--resume`` skips finished stages and carries
on inside the current one. Texts are rendered with the base model's chat template when it has
one, exactly as ``/story`` will ask, so the adapter learns the prompt it will be served.
The adapter is exported as a GGUF LoRA (llama.cpp applies it to the base GGUF) or merged into
the base and converted to one GGUF.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from engine.errors import ConfigError, InputError
from engine.stories.prompt import SYSTEM
from engine.training import converters
from engine.training.config import TrainConfig
from engine.training.format import prompt_for, read_split
from engine.training.loop import evaluate_loss, fit, make_blocks, pick_device, seed_everything
from engine.training.outputs import TrainedRun, check_resumable, write_run
from engine.training.scratch import n_params

ADAPTER_DIR = "adapter"
LORA_GGUF = "story-lora.gguf"


def base_from_gguf(gguf: Path, folder: Path) -> Path:
    """A Hugging Face folder made from a GGUF (dequantized by transformers), so a LoRA can be
    trained on the very model the bot serves; made once and reused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (folder / "config.json").is_file():
        return folder
    if not gguf.is_file():
        raise InputError(f"no {gguf}", user_message=f"Base model file {gguf} does not exist.")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # a plain model of the same config: transformers will not save a "GGUF-quantized" one
    plain = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        loaded.config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    del loaded
    plain.config.quantization_config = None
    tmp = folder.with_name(folder.name + ".tmp")
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.replace(folder)
    return folder


def resolve_base(base: str, out: Path) -> tuple[Path, Path | None]:
    """``--base``: a Hugging Face folder, a ``.gguf`` file or ``bundled`` (the default chat
    model). Returns the folder to train on and the GGUF the adapter applies to, if known."""
    if base == "bundled":
        from engine.llm.llama_cpp import bundled_model_path

        gguf = bundled_model_path()
        return base_from_gguf(gguf, out / "base-hf"), gguf
    path = Path(base)
    if path.suffix == ".gguf":
        return base_from_gguf(path, out / "base-hf"), path.resolve()
    return check_model_dir(path), None


def check_model_dir(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(f"no {path}", user_message=(
            f"Base model folder {path} does not exist (a Hugging Face model folder with "
            "config.json, *.safetensors and tokenizer files)."))
    if not (path / "config.json").is_file():
        raise InputError(f"no config.json in {path}", user_message=(
            f"{path} has no config.json: it is not a Hugging Face model folder."))
    return path


def load_base(base: Path, device: torch.device, qlora: bool) -> tuple[Any, Any]:
    """The tokenizer and the base model (4-bit when ``qlora``) from a folder that
    :func:`resolve_base` checked, local files only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if qlora:
        if device.type != "cuda":
            raise ConfigError("--qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine "
                              "has none: run plain LoRA (without --qlora)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("--qlora needs bitsandbytes: pip install '.[qlora]'")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    else:
        kwargs["dtype"] = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    return tokenizer, model


def render_request(tokenizer: Any, row: dict[str, Any], fields: tuple[str, ...]) -> str:
    """The ``/story`` request as the model will see it: through the base's chat template
    (system line + request) when it has one, else the bare tagged prompt."""
    prompt = prompt_for(row, fields)
    if getattr(tokenizer, "chat_template", None):
        head: str = tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            tokenize=False, add_generation_prompt=True)
        return head
    return (tokenizer.bos_token or "") + prompt


def token_ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def render(tokenizer: Any, row: dict[str, Any], fields: tuple[str, ...]) -> list[int]:
    """Token ids of one training example: the ``/story`` request and the story."""
    sep = "" if getattr(tokenizer, "chat_template", None) else " "  # as the scratch trainer
    text = (render_request(tokenizer, row, fields) + sep + row["story"]
            + (tokenizer.eos_token or ""))
    return token_ids(tokenizer, text)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "stage"


def attach_lora(model: Any, cfg: TrainConfig, device: torch.device, qlora: bool) -> Any:
    """The base wrapped with fresh LoRA weights as ``[train.lora]`` shapes them."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if qlora:
        model = prepare_model_for_kbit_training(model)  # type: ignore[no-untyped-call]
    lc = cfg.lora
    model = get_peft_model(model, LoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, task_type="CAUSAL_LM",
        target_modules=list(lc.target_modules) or "all-linear"))
    return model.to(device)


def train_lora(base_spec: str, dataset: Path, out: Path, cfg: TrainConfig, *,
               resume: bool = False, qlora: bool = False, merge: bool = False,
               export: bool = True, base_gguf: Path | None = None, outtype: str = "f16",
               converters_dir: Path | None = None) -> TrainedRun:
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    if resume:
        check_resumable(out)
    # read first: a wrong dataset path fails before any model work
    rows = {split: read_split(dataset, split) for split in ("train", "validation")}
    out.mkdir(parents=True, exist_ok=True)
    base, gguf_of_base = resolve_base(base_spec, out)
    base_gguf = base_gguf or gguf_of_base
    tokenizer, model = load_base(base, device, qlora)
    model = attach_lora(model, cfg, device, qlora)
    lc = cfg.lora
    last_fields = lc.stages[-1].fields

    def blocks(split: str, fields: tuple[str, ...]) -> torch.Tensor:
        return make_blocks([render(tokenizer, r, fields) for r in rows[split]], cfg.block_size)

    final_val = blocks("validation", last_fields)
    report: dict[str, Any] = {
        "base": str(base), "dataset": str(dataset), "device": device.type, "qlora": qlora,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": n_params(model),
        "base_val_loss": round(evaluate_loss(model, final_val, cfg.batch_size, device,
                                             cfg.eval_batches), 4),
        "stages": [],
    }
    for i, stage in enumerate(lc.stages, 1):
        run_dir = out / "runs" / f"{i}-{_slug(stage.name)}"
        result = fit(model, blocks("train", stage.fields), blocks("validation", stage.fields),
                     cfg, run_dir=run_dir, device=device, epochs=stage.epochs,
                     resume=resume,
                     label=f"stage {i}/{len(lc.stages)} {stage.name}")
        report["stages"].append({"name": stage.name, "fields": list(stage.fields),
                                 "steps": result.steps, "stopped": result.stopped,
                                 "best_val_loss": round(result.best_val_loss, 4),
                                 "tokens_per_s": round(result.tokens_per_s, 1),
                                 "seconds": round(result.seconds, 2)})
    report["final_val_loss"] = round(evaluate_loss(model, final_val, cfg.batch_size, device,
                                                   cfg.eval_batches), 4)
    adapter = out / ADAPTER_DIR
    model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(adapter)
    manifest: dict[str, Any] = {"kind": "lora", "base": str(base),
                                "base_gguf": str(base_gguf) if base_gguf else None}
    gguf = None
    if export and merge:
        gguf = export_merged(base, adapter, out, outtype=outtype, converters_dir=converters_dir)
        manifest = {"kind": "merged", "model": gguf.name, "base": str(base)}
    elif export:
        gguf = converters.lora_to_gguf(adapter, base, out / LORA_GGUF, outtype=outtype,
                                       folder=converters_dir)
        manifest["lora"] = gguf.name
    if gguf:
        report["gguf"] = {"path": gguf.name, "bytes": gguf.stat().st_size, "outtype": outtype}
    write_run(out, report, manifest)
    return TrainedRun(out, gguf, report)


def summary(report: dict[str, Any]) -> list[str]:
    """Lines for people: adapter size, loss before and after, each stage."""
    lines = [f"LoRA on {report['device']}: {report['trainable_parameters']:,} trainable of "
             f"{report['parameters']:,} parameters; validation loss {report['base_val_loss']} "
             f"-> {report['final_val_loss']}"]
    lines += [f"  stage {s['name']}: {s['steps']} steps, {s['tokens_per_s']:,.0f} tokens/s, "
              f"best validation loss {s['best_val_loss']}, {s['stopped']}"
              for s in report["stages"]]
    return lines


def export_merged(base: Path, adapter: Path, out: Path, *, outtype: str,
                  converters_dir: Path | None) -> Path:
    """The adapter merged into a full-precision copy of the base, converted to one GGUF."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    full = AutoModelForCausalLM.from_pretrained(base, local_files_only=True,
                                                dtype=torch.float32)
    merged = PeftModel.from_pretrained(full, adapter).merge_and_unload()
    folder = out / "merged"
    merged.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(base, local_files_only=True).save_pretrained(folder)
    spm_model = "tokenizer.model"  # a SentencePiece model, which the converter reads directly
    if (base / spm_model).is_file() and not (folder / spm_model).is_file():
        shutil.copy(base / spm_model, folder / spm_model)
    return converters.hf_to_gguf(folder, out / "model.gguf", outtype=outtype,
                                 folder=converters_dir)
