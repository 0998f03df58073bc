"""``doppel train persona NAME``: a LoRA of the chat model on the person's own writing.

Each example is one exchange in the chat template the persona is served with: a short
system line naming the persona (:func:`brief`: the style is to live in the weights, and a
long prompt would cost most of the compute while teaching nothing), what the person was
answering, and what they wrote. What they answered is, in order of preference,
the mail their mail replies to (``In-Reply-To`` found among the files), the message quoted
or forwarded below their own words, or else the subject line. Only mail sent from the
persona's ``[sources] addresses`` counts as theirs; e-mail addresses and phone numbers are
redacted from both sides, as memory redacts them; lines hard-wrapped by a mail client are
joined (a chat reply has no fixed width); a greeting line that is only a name
("Christy,") is dropped, since the persona does not know who it talks to. The loss is
taken on the person's words only.

The base is the chat model the bot serves (its GGUF dequantized once), so the exported
GGUF LoRA applies to the very file llama.cpp loads. The adapter and a manifest go to
``persona_data/NAME/fine-tune/``; checkpoints stay in the data dir (``--resume``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.llm.llama_cpp import lora_sidecar
from engine.memory.clean import quoted_body, strip_mail, thread_key, unwrap
from engine.memory.parse import ParseError, SourceDoc, read_file
from engine.memory.redact import redact
from engine.personas import Persona
from engine.training.config import TrainConfig

FINE_TUNE_DIR = "fine-tune"
LORA_FILE = "persona-lora.gguf"
MIN_EXAMPLES = 20
"""Fewer of the person's own mails than this teach a model nothing about them."""
VALIDATION_SHARE = 10
"""Percent of examples held out for validation (by a hash of the reply: stable)."""

_NAME_GREETING = re.compile(r"^\s*((hi|hello|dear|hey)\s+)?([A-Z][\w.'-]*\s*){1,3}[,:\-]?\s*$")


@dataclass(frozen=True)
class Example:
    """One exchange: what the person answered (``prompt``) and their words (``reply``)."""

    prompt: str
    reply: str
    kind: str
    """reply (a mail they answered), quoted (quoted or forwarded below their words) or
    subject (only the subject line was there to answer)."""
    split: str
    source: str


@dataclass
class ExamplesReport:
    mails: int = 0
    own: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)


def _without_name_greeting(text: str) -> str:
    first, _, rest = text.partition("\n")
    if rest.strip() and _NAME_GREETING.match(first) and len(first.split()) <= 4:
        return rest.strip()
    return text


def _clean(text: str, limit_words: int) -> str:
    text = unwrap(redact(text).strip())
    words = text.split(" ")
    return " ".join(words[:limit_words]) if len(words) > limit_words else text


def _split_of(reply: str) -> str:
    bucket = int(hashlib.sha256(reply.encode()).hexdigest()[:8], 16) % 100
    return "validation" if bucket < VALIDATION_SHARE else "train"


def read_mails(files: Iterable[Path]) -> tuple[list[SourceDoc], list[str]]:
    """The mails in ``files``, and a line for each file that could not be read."""
    docs: list[SourceDoc] = []
    unreadable: list[str] = []
    for path in files:
        try:
            docs += [d for _, d, _ in read_file(path) if isinstance(d, SourceDoc) and d.is_mail]
        except ParseError as exc:
            unreadable.append(f"{path}: {exc}")
    return docs, unreadable


def examples_from_mail(docs: list[SourceDoc], addresses: Iterable[str], *,
                       max_prompt_words: int = 150, max_reply_words: int = 300,
                       ) -> tuple[list[Example], ExamplesReport]:
    """The person's exchanges in ``docs`` (mail of any sender: others' mail is what they
    answered), deduplicated, split train/validation."""
    report = ExamplesReport(mails=len(docs))
    own_addresses = {a.lower() for a in addresses}
    by_id = {d.message_id: d for d in docs if d.message_id}
    seen: set[str] = set()
    out: list[Example] = []
    for doc in docs:
        if doc.sender_address not in own_addresses:
            continue
        report.own += 1
        own, _ = strip_mail(doc.text)
        reply = _clean(_without_name_greeting(own), max_reply_words)
        if len(reply.split()) < 3:
            report.dropped["no words of their own (a bare forward or one word)"] += 1
            continue
        key = " ".join(reply.lower().split())
        if key in seen:
            report.dropped["duplicate"] += 1
            continue
        seen.add(key)
        answered = by_id.get(doc.in_reply_to)
        if answered is not None and answered.sender_address not in own_addresses:
            prompt, kind = strip_mail(answered.text)[0], "reply"
        else:
            prompt, kind = quoted_body(doc.text), "quoted"
        if len(prompt.split()) < 2:
            prompt, kind = thread_key(doc.subject) or "(no subject)", "subject"
        prompt = _clean(prompt, max_prompt_words)
        ex = Example(prompt=prompt, reply=reply, kind=kind, split=_split_of(reply),
                     source=doc.source)
        out.append(ex)
        report.kinds[kind] += 1
        report.splits[ex.split] += 1
    if len(out) < MIN_EXAMPLES:
        raise InputError(f"{len(out)} examples", user_message=(
            f"Only {len(out)} mails written by the person were found (of {report.mails} "
            f"read; their addresses: {', '.join(sorted(own_addresses)) or 'none set'}); at "
            f"least {MIN_EXAMPLES} are needed. Give their sent mail, and list the addresses "
            "they write from under [sources] addresses in persona.toml."))
    if not report.splits["validation"]:  # a tiny set: hold one out all the same
        last = out[-1]
        out[-1] = Example(last.prompt, last.reply, last.kind, "validation", last.source)
        report.splits["train"] -= 1
        report.splits["validation"] += 1
    return out, report


def brief(persona: Persona) -> str:
    """The system line of training examples: the first sentence of the persona's prompt."""
    prompt = " ".join(persona.profile.system_prompt.split())
    first = re.split(r"(?<=[.!?])\s", prompt, maxsplit=1)[0]
    return first or f"You are {persona.display_name}."


def render(tokenizer: Any, system: str, ex: Example, max_tokens: int) -> tuple[list[int],
                                                                               list[int]]:
    """Token ids of one exchange through the base's chat template, and the loss mask (1 on
    the person's words and the end of turn). The prompt is cut to half of ``max_tokens``,
    the reply to what is left, so every example teaches something."""
    from engine.training.lora import token_ids

    def head(prompt: str) -> list[int]:
        if not getattr(tokenizer, "chat_template", None):  # a base model: plain text
            return token_ids(tokenizer, f"{tokenizer.bos_token or ''}{system}\n\n{prompt}\n\n")
        text: str = tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            tokenize=False, add_generation_prompt=True)
        return token_ids(tokenizer, text)

    prompt = ex.prompt
    ids = head(prompt)
    while len(ids) > max_tokens // 2 and len(prompt.split()) > 8:
        prompt = " ".join(prompt.split()[: len(prompt.split()) * 2 // 3]) + " ..."
        ids = head(prompt)
    end = tokenizer.eos_token or ""
    if "<|im_start|>" in (getattr(tokenizer, "chat_template", None) or ""):
        end = "<|im_end|>\n"  # ChatML: the turn ends as the template ends it
    reply = token_ids(tokenizer, ex.reply + end)[: max(1, max_tokens - len(ids))]
    return ids + reply, [0] * len(ids) + [1] * len(reply)


def export(work: Path, gguf: Path, persona: Persona, base_gguf: Path,
           report: dict[str, Any]) -> Path:
    """The GGUF LoRA and its manifest into the persona's folder."""
    target = persona.directory / FINE_TUNE_DIR
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(gguf, target / (LORA_FILE + ".tmp"))
    (target / (LORA_FILE + ".tmp")).replace(target / LORA_FILE)
    manifest = {"kind": "persona-lora", "persona": persona.name, "base_name": base_gguf.name,
                "base_bytes": base_gguf.stat().st_size, "work": str(work),
                "examples": report["examples"], "val_loss": [report["base_val_loss"],
                                                             report["final_val_loss"]]}
    lora_sidecar(target / LORA_FILE).write_text(json.dumps(manifest, indent=2),
                                                encoding="utf-8")
    return target / LORA_FILE


def base_folder(gguf: Path, data_dir: Path) -> Path:
    """Where the dequantized copy of ``gguf`` is kept (made once, shared by personas)."""
    slug = re.sub(r"[^a-z0-9]+", "-", gguf.stem.lower()).strip("-")
    return data_dir / "training" / f"base-{slug}-{gguf.stat().st_size}"


def train_persona(persona: Persona, examples: list[Example], system: str, base_gguf: Path,
                  data_dir: Path, cfg: TrainConfig, *, resume: bool = False,
                  outtype: str = "f16", converters_dir: Path | None = None,
                  ) -> tuple[Path, dict[str, Any]]:
    """Train, export and install the persona's LoRA; its path and the figures."""
    import torch

    from engine.training import converters
    from engine.training.loop import evaluate_loss, fit, make_blocks, pick_device, seed_everything
    from engine.training.lora import attach_lora, base_from_gguf, load_base
    from engine.training.outputs import check_resumable, write_run
    from engine.training.scratch import n_params

    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    work = data_dir / "training" / f"persona-{persona.name}"
    if resume:
        check_resumable(work)
    converters.find(converters_dir)  # before minutes of training: can it be exported?
    work.mkdir(parents=True, exist_ok=True)
    base = base_from_gguf(base_gguf, base_folder(base_gguf, data_dir))
    tokenizer, model = load_base(base, device, qlora=False)
    model = attach_lora(model, cfg, device, qlora=False)

    def blocks(split: str) -> torch.Tensor:
        rendered = [render(tokenizer, system, e, cfg.block_size) for e in examples
                    if e.split == split]
        out = make_blocks([r[0] for r in rendered], cfg.block_size, [r[1] for r in rendered])
        if not len(out):
            raise InputError("no blocks", user_message=(
                f"The {split} mails are too short to fill one block of {cfg.block_size} "
                "tokens: lower [train.persona] block_size."))
        return out

    train, val = blocks("train"), blocks("validation")
    report: dict[str, Any] = {
        "persona": persona.name, "base": base_gguf.name, "device": device.type,
        "examples": {s: sum(e.split == s for e in examples) for s in ("train", "validation")},
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": n_params(model),
        "base_val_loss": round(evaluate_loss(model, val, cfg.batch_size, device), 4),
    }
    result = fit(model, train, val, cfg, run_dir=work / "runs" / "persona", device=device,
                 resume=resume, label=f"fine-tune {persona.name}")
    report |= {"final_val_loss": round(evaluate_loss(model, val, cfg.batch_size, device), 4),
               "steps": result.steps, "stopped": result.stopped,
               "tokens_per_s": round(result.tokens_per_s, 1),
               "seconds": round(result.seconds, 1)}
    adapter = work / "adapter"
    model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(adapter)
    gguf = converters.lora_to_gguf(adapter, base, work / LORA_FILE, outtype=outtype,
                                   folder=converters_dir)
    write_run(work, report, {"kind": "persona-lora", "lora": LORA_FILE,
                             "base_gguf": str(base_gguf)})
    return export(work, gguf, persona, base_gguf, report), report


def summary(report: dict[str, Any]) -> list[str]:
    """Lines for people: what was trained, loss before and after, how long."""
    return [f"LoRA on {report['device']}: {report['trainable_parameters']:,} trainable of "
            f"{report['parameters']:,} parameters; {report['steps']} steps "
            f"({report['stopped']}) in {report['seconds']:.0f} s at "
            f"{report['tokens_per_s']:,.0f} tokens/s; validation loss on the person's held-out "
            f"mail {report['base_val_loss']} -> {report['final_val_loss']}"]
