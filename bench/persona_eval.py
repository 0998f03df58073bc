"""Does the persona sound like the person? A blind authorship classifier scores replies.

The classifier (character 2-4-grams, TF-IDF, logistic regression) is trained on 70% of
the person's own mail (the part they wrote, quotes and forwards cut as at ingest) against
two other writers in ``shared/corpus/``: Vince Kaminski's own mail and TinyStories. It
never sees the other 30% of the person's mail; its accuracy on that held-out part (and on
held-out text of the others) is reported, and the held-out mail's mean score is the
ceiling. Then it scores replies to the same messages from friends and colleagues:

- ``plain``: the bundled model with no persona ("You are a helpful assistant.");
- ``persona``: the persona through the engine (system prompt, style profile, memory, the
  engine's quotes), memory built from the training 70% only;
- ``persona + fine-tune``: the same with the persona's LoRA (``persona.toml`` ``[model]
  lora_path``): with ``--train``, made here by ``doppel train persona``'s code from the
  same training 70% of the mail (never the held-out part); or one given with ``--lora``.

A score is the classifier's probability that the person wrote the text (0-1). Only what
the model wrote is scored: a reply's opening quote from memory (the engine's, the person's
own words) is left out, or it would lift every persona score.

A second classifier, trained on a different split of the person's mail (another seed)
against different writers (the people who wrote to Vince Kaminski, quoted in his replies,
and the documents in ``shared/corpus/docs/``), scores the same replies: a style that
fools one classifier's choice of other writers should not pass for the person's by luck.

    .venv/bin/python bench/persona_eval.py [--person allen] [--train [--epochs N]] [--lora PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    CORPUS,
    ROOT,
    MachineLoad,
    bench_parser,
    data_dir,
    memory_engine,
    temp_config,
    write,
)

from engine.config_edit import set_persona_lora
from engine.engine import Engine
from engine.llm.base import ChatMessage
from engine.memory.clean import quoted_body, strip_mail
from engine.memory.ingest import Ingestor
from engine.memory.parse import parse_file
from engine.records import UserRef

PEOPLE: dict[str, dict[str, Any]] = {
    "allen": {"name": "Phillip Allen", "mail": CORPUS / "enron-allen-p" / "sent_mail.mbox",
              "system": "You are Phillip Allen, a natural gas trader at Enron in Houston who "
                        "also manages rental properties and is building a house.",
              "sign_off": "Phillip"},
}
OTHERS = {"kaminski": CORPUS / "enron-kaminski-v" / "sent_items.mbox"}
STORIES = CORPUS / "stories" / "tinystories.jsonl"
DOCS = CORPUS / "docs"
MESSAGES = [
    "Can you send me the rent numbers for last month?",
    "The builder says the framing will be two weeks late. What should I tell him?",
    "Are you coming to the desk meeting tomorrow?",
    "What do you think gas prices will do this winter?",
    "Lucy wants to know if she can hire someone to fix the roof.",
    "Could you look over the loan documents before Friday?",
    "The tenants in #12 are late again. How do you want to handle it?",
    "Do you have time to interview an analyst next week?",
    "Thanks for the help with the spreadsheet yesterday.",
    "How is the house project coming along?",
    "Can we move our call to Thursday afternoon?",
    "Should we make an offer on the apartment complex in San Marcos?",
]


def own_texts(mbox: Path, min_chars: int = 80) -> list[str]:
    out = []
    for doc in parse_file(mbox):
        text, _ = strip_mail(doc.text)
        text = " ".join(text.split())
        if len(text) >= min_chars:
            out.append(text)
    return out


def quoted_texts(mbox: Path, min_chars: int = 80) -> list[str]:
    """What other people wrote to the owner of ``mbox``, as quoted in their replies."""
    out = []
    for doc in parse_file(mbox):
        text = " ".join(quoted_body(doc.text).split())
        if len(text) >= min_chars:
            out.append(text[:3000])
    return list(dict.fromkeys(out))


def document_texts(root: Path, min_chars: int = 80) -> list[str]:
    """The documents' text, in paragraphs of up to 1,500 characters."""
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in (".pdf", ".docx", ".eml", ".msg"):
            continue
        try:
            docs = parse_file(path)
        except Exception:  # a file the parser refuses is left out
            continue
        for doc in docs:
            text = " ".join(strip_mail(doc.text)[0].split()) if doc.is_mail else " ".join(
                doc.text.split())
            out += [text[i:i + 1500] for i in range(0, len(text), 1500)
                    if len(text[i:i + 1500]) >= min_chars]
    return out


def split(texts: list[str], share: float, seed: int = 7) -> tuple[list[str], list[str]]:
    shuffled = texts[:]
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * share)
    return shuffled[:cut], shuffled[cut:]


def train_classifier(person: list[str], others: list[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                        min_df=2, max_features=200_000),
        LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced"))
    model.fit(person + others, [1] * len(person) + [0] * len(others))
    return model


def score(model: Any, texts: list[str]) -> float:
    if not texts:
        return float("nan")
    return round(float(model.predict_proba(texts)[:, 1].mean()), 3)


def style(texts: list[str], sign_off: str) -> dict[str, float]:
    """Mean words, and the share of texts that end with the person's sign-off."""
    words = [len(t.split()) for t in texts]
    signed = [t.rstrip(" .,\n").endswith(sign_off) for t in texts]
    return {"words": round(sum(words) / max(len(words), 1), 1),
            "signed_off": round(sum(signed) / max(len(signed), 1), 2)}


async def plain_replies(engine: Engine) -> list[str]:
    def run() -> list[str]:
        out = []
        for message in MESSAGES:
            messages = [ChatMessage("system", "You are a helpful assistant."),
                        ChatMessage("user", message)]
            out.append("".join(engine.llm.stream_chat(messages, engine.sampling, lambda: False)))
        return out

    return await asyncio.to_thread(run)


_QUOTE = re.compile(r"^(?:On [^\n]{0,80}|I wrote[^\n]{0,60}|In [^\n]{0,80}):\s*“.*?” \[\d+\]\s*",
                    re.DOTALL)


def model_written(reply: str) -> str:
    """The reply without the engine's opening quote from memory."""
    return _QUOTE.sub("", reply, count=1).strip()


async def persona_replies(engine: Engine, persona: str) -> list[str]:
    out = []
    for i, message in enumerate(MESSAGES):
        user = UserRef("bench", str(i), f"Colleague {i}")  # each message a fresh chat
        reply = await engine.chat(user, message, persona=persona)
        out.append(model_written("".join([c async for c in reply])))
    return out


async def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--person", choices=sorted(PEOPLE), default="allen")
    ap.add_argument("--lora", type=Path, help="a GGUF LoRA of the chat model for this person")
    ap.add_argument("--train", action="store_true",
                    help="fine-tune the persona on the training 70%% of the mail first")
    ap.add_argument("--epochs", type=int, help="with --train: override [train.persona] epochs")
    ap.add_argument("--lora-scale", type=float, default=1.0,
                    help="how strongly the LoRA applies ([model] lora_scale)")
    ap.add_argument("--save-lora", type=Path,
                    help="with --train: keep the adapter made here at this path")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="with --train: where to train")
    ap.add_argument("--model", type=Path, help="a GGUF chat model instead of the bundled one")
    args = ap.parse_args()
    load = MachineLoad()
    spec = PEOPLE[args.person]

    t0 = time.perf_counter()
    person_train, person_test = split(own_texts(spec["mail"]), 0.7)
    other_train: list[str] = []
    other_test: list[str] = []
    for path in OTHERS.values():
        a, b = split(own_texts(path), 0.7)
        other_train += a
        other_test += b
    stories = [json.loads(line)["text"] for line in STORIES.read_text().splitlines()[:600]]
    a, b = split(stories, 0.7)
    other_train += a
    other_test += b
    classifier = train_classifier(person_train, other_train)
    predicted = classifier.predict(person_test + other_test)
    truth = [1] * len(person_test) + [0] * len(other_test)
    accuracy = sum(int(p == t) for p, t in zip(predicted, truth, strict=True)) / len(truth)

    # The second opinion: another split of the person's mail, other writers.
    own = own_texts(spec["mail"])
    b_train, b_test = split(own, 0.7, seed=13)
    others_b = quoted_texts(OTHERS["kaminski"]) + document_texts(DOCS)
    ob_train, ob_test = split(others_b, 0.7, seed=13)
    second = train_classifier(b_train, ob_train)
    b_pred = second.predict(b_test + ob_test)
    b_truth = [1] * len(b_test) + [0] * len(ob_test)
    b_accuracy = sum(int(p == t) for p, t in zip(b_pred, b_truth, strict=True)) / len(b_truth)

    result: dict[str, Any] = {
        "bench": "persona_eval", "person": args.person,
        "model": str(args.model or "bundled SmolLM2-135M-Instruct"),
        "classifier": {"person_train": len(person_train), "person_test": len(person_test),
                       "others_train": len(other_train), "others_test": len(other_test),
                       "held_out_accuracy": round(accuracy, 3)},
        "second_classifier": {"person_train": len(b_train), "person_test": len(b_test),
                              "others_train": len(ob_train), "others_test": len(ob_test),
                              "others": "people who wrote to Vince Kaminski (quoted in his "
                                        "replies) and shared/corpus/docs",
                              "held_out_accuracy": round(b_accuracy, 3)},
        "scores": {"own_held_out_mail": score(classifier, person_test),
                   "other_writers_held_out": score(classifier, other_test)},
        "scores_second": {"own_held_out_mail": score(second, b_test),
                          "other_writers_held_out": score(second, ob_test)},
        "messages": MESSAGES,
    }
    with data_dir(args.data_dir) as tmp:
        mail = tmp / "train.mbox"
        train_set = set(person_train)
        # Memory from the training 70% only: the held-out mail must not be quoted back.
        docs = [d for d in parse_file(spec["mail"])
                if " ".join(strip_mail(d.text)[0].split()) in train_set]
        mail.write_text("".join(_as_mbox(d) for d in docs))
        personas = tmp / "personas"
        shutil.copytree(ROOT / "persona_data" / args.person, personas / args.person,
                        ignore=shutil.ignore_patterns("fine-tune"), dirs_exist_ok=True)
        set_persona_lora(personas / args.person, None)  # a fine-tune made elsewhere: not here
        cfg = temp_config(tmp / "data", personas, args.person, base=args.config)
        if args.model:
            cfg = replace(cfg, llm=replace(cfg.llm, model_path=args.model))
        engine = await memory_engine(cfg, load_llm=True)
        try:
            persona = engine.personas.get(args.person)
            await Ingestor(engine.memory, persona).run([mail])
            result["replies"] = {"plain": await plain_replies(engine),
                                 "persona": await persona_replies(engine, args.person)}
        finally:
            await engine.stop()
        lora = args.lora
        if args.train:
            lora, result["fine_tune"] = fine_tune(cfg, persona, mail, args)
            if args.save_lora:
                args.save_lora.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lora, args.save_lora)
                result["fine_tune"]["saved_to"] = str(args.save_lora)
        if lora:
            set_persona_lora(personas / args.person, lora.resolve())
            toml = personas / args.person / "persona.toml"
            toml.write_text(toml.read_text().replace(
                "[model]\n", f"[model]\nlora_scale = {args.lora_scale}\n", 1))
            result["lora_scale"] = args.lora_scale
            engine = await memory_engine(cfg, load_llm=True)
            try:
                result["replies"]["persona + fine-tune"] = await persona_replies(
                    engine, args.person)
            finally:
                await engine.stop()
    result["style"] = {"own_held_out_mail": style(person_test, spec["sign_off"])}
    for name, replies in result["replies"].items():
        result["scores"][name] = score(classifier, replies)
        result["scores_second"][name] = score(second, replies)
        result["style"][name] = style(replies, spec["sign_off"])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    path = write("persona_eval", result, args.out, load)

    c, c2 = result["classifier"], result["second_classifier"]
    print(f"classifier A: {c['person_train']} of the person's mails vs {c['others_train']} "
          f"texts of 2 other writers; held-out accuracy {c['held_out_accuracy']:.1%}")
    print(f"classifier B: {c2['person_train']} of the person's mails (another split) vs "
          f"{c2['others_train']} texts of {c2['others']}; held-out accuracy "
          f"{c2['held_out_accuracy']:.1%}")
    print(f"  {'':24}    A     B")
    for name, value in result["scores"].items():
        shape = result["style"].get(name)
        print(f"  {name:24} {value:.2f}  {result['scores_second'][name]:.2f}" + (
            f"   {shape['words']:5.0f} words, {shape['signed_off']:.0%} signed off"
            if shape else ""))
    if "fine_tune" in result:
        from engine.training.persona import summary

        print("fine-tune: " + "\n".join(summary(result["fine_tune"])))
    print(f"wrote {path}")
    return 0


def fine_tune(cfg: Any, persona: Any, mail: Path, args: argparse.Namespace,
              ) -> tuple[Path, dict[str, Any]]:
    """``doppel train persona`` on the training mail: the adapter and its figures."""
    from engine.llm.llama_cpp import bundled_model_path
    from engine.training.persona import brief, examples_from_mail, read_mails, train_persona

    train_cfg = cfg.train.for_persona()
    train_cfg = replace(train_cfg, device=args.device,
                        epochs=args.epochs or train_cfg.epochs)
    docs, _ = read_mails([mail])
    examples, report = examples_from_mail(docs, persona.sources.addresses)
    lora, figures = train_persona(persona, examples, brief(persona),
                                  cfg.llm.model_path or bundled_model_path(),
                                  cfg.storage.data_dir, train_cfg)
    figures["kinds"] = dict(report.kinds)
    return lora, figures


def _as_mbox(doc: Any) -> str:
    """One parsed mail back as an mbox entry (headers ingest reads, body as parsed)."""
    date = doc.date.strftime("%a, %d %b %Y %H:%M:%S %z") if doc.date else ""
    body = doc.text.replace("\nFrom ", "\n>From ")
    return (f"From bench Thu Jan  1 00:00:00 2001\nFrom: {doc.sender}\nTo: {doc.recipients}\n"
            f"Subject: {doc.subject}\nMessage-ID: {doc.message_id}\nDate: {date}\n\n{body}\n\n")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
