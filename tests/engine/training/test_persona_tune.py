"""`doppel train persona`: exchanges from the person's real mail, a loss on their words
only, a GGUF LoRA that llama.cpp switches on for that persona's turns and off for others,
a missing adapter stopping the start, one that cannot be served left out."""

from __future__ import annotations

import asyncio
import re
import shutil
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.cli import main
from engine.config import LLMConfig, load_config
from engine.engine import Engine, UserRef
from engine.errors import ConfigError, InputError
from engine.llm.base import ChatMessage, LogprobMeter, SamplingParams
from engine.llm.llama_cpp import LlamaCppBackend, lora_sidecar
from engine.memory.clean import unwrap
from engine.personas import load_persona
from engine.training.loop import batch_loss, make_blocks
from engine.training.persona import brief, examples_from_mail, read_mails
from tests.auxil.fake_llm import FakeLLM
from tests.bot.test_console import write_config
from tests.conftest import ROOT
from tests.engine.training.conftest import tiny_config

ALLEN = ROOT / "persona_data" / "allen"
PERSONA = """
[persona]
display_name = "Phillip Allen"
system_prompt = "You are Phillip Allen, a gas trader in Houston. You answer briefly."
[sources]
globs = ["sources/*.eml"]
addresses = ["phillip.allen@enron.com"]
"""
GREEDY = SamplingParams(max_tokens=12, temperature=0.0, top_k=1, seed=1)


def thread(folder: Path) -> None:
    """A colleague's question and the person's reply to it (``In-Reply-To``), with a phone
    number, a name-only greeting and a sign-off: mail as a client writes it."""
    ask = EmailMessage()
    ask["From"], ask["To"] = "Greg Whalley <greg.whalley@enron.com>", "phillip.allen@enron.com"
    ask["Subject"], ask["Message-ID"] = "Rent roll", "<ask-1@enron.com>"
    ask["Date"] = "Mon, 12 Mar 2001 09:00:00 -0600"
    ask.set_content("Can you send me the rent roll for the Bishops Corner units by Friday?")
    reply = EmailMessage()
    reply["From"], reply["To"] = "phillip.allen@enron.com", "greg.whalley@enron.com"
    reply["Subject"], reply["In-Reply-To"] = "Re: Rent roll", "<ask-1@enron.com>"
    reply["Message-ID"], reply["Date"] = "<reply-1@enron.com>", "Mon, 12 Mar 2001 10:00:00 -0600"
    reply.set_content("Greg,\n\nI will have the rent roll to you Thursday. Call me at "
                      "713-853-7041 if the numbers look off.\n\nPhillip")
    for name, msg in (("ask.eml", ask), ("reply.eml", reply)):
        (folder / name).write_bytes(bytes(msg))


def persona_dir(tmp: Path) -> Path:
    """A persona with the demo persona's 60 real mails and one written thread."""
    folder = tmp / "personas" / "allen"
    shutil.copytree(ALLEN / "sources", folder / "sources")
    thread(folder / "sources")
    (folder / "persona.toml").write_text(PERSONA)
    return folder


def at(cfg: Path, personas: Path, llm: str = "") -> Path:
    """``cfg`` with its personas in ``personas`` (default allen) and ``llm`` lines added."""
    text = cfg.read_text().replace(f'dir = "{ROOT / "persona_data"}"', f'dir = "{personas}"')
    cfg.write_text(text.replace("[llm]\n", f"[llm]\n{llm}", 1))
    return cfg


def test_exchanges_come_from_the_persons_own_mail_with_what_they_answered(
        tmp_path: Path) -> None:
    folder = persona_dir(tmp_path)
    docs, unreadable = read_mails(sorted((folder / "sources").glob("*.eml")))
    assert not unreadable and len(docs) == 62
    examples, report = examples_from_mail(docs, ["phillip.allen@enron.com"])
    assert report.own == 61  # Greg's question is context, not Phillip's writing
    by_kind = {e.kind for e in examples}
    assert by_kind == {"reply", "quoted", "subject"}
    (answered,) = [e for e in examples if e.kind == "reply"]
    assert answered.prompt.startswith("Can you send me the rent roll")
    assert answered.reply.startswith("I will have the rent roll")  # "Greg," dropped
    assert "[phone]" in answered.reply and "7041" not in answered.reply
    assert answered.reply.endswith("Phillip")
    assert all(e.reply.strip() for e in examples)
    assert report.dropped["no words of their own (a bare forward or one word)"] > 0
    assert {e.split for e in examples} == {"train", "validation"}
    again, _ = examples_from_mail(list(reversed(docs)), ["phillip.allen@enron.com"])
    assert {(e.reply, e.split) for e in again} == {(e.reply, e.split) for e in examples}


def test_too_little_of_their_own_mail_says_what_to_do(tmp_path: Path) -> None:
    docs, _ = read_mails(sorted((ALLEN / "sources").glob("*.eml")))
    with pytest.raises(InputError) as err:
        examples_from_mail(docs, ["someone.else@enron.com"])
    assert "[sources] addresses" in err.value.user_message
    assert "someone.else@enron.com" in err.value.user_message


def test_the_loss_is_taken_on_the_persons_words_only() -> None:
    torch.manual_seed(0)
    ids = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20]]
    masks = [[0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]]
    blocks = make_blocks(ids, 7, masks)
    assert blocks.shape == (2, 2, 8)
    model = torch.nn.Sequential(torch.nn.Embedding(32, 32), torch.nn.Linear(32, 32))
    x, learn = blocks[:, 0], blocks[:, 1]
    logits = model(x[:, :-1])
    picked = learn[:, 1:].bool()
    expected = torch.nn.functional.cross_entropy(logits[picked], x[:, 1:][picked])
    assert torch.allclose(batch_loss(model, blocks), expected)
    # a block of context alone teaches nothing: dropped
    assert len(make_blocks([[1, 2, 3, 4, 5, 6, 7, 8, 9]], 4, [[0] * 5 + [1] * 4])) == 1


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_base: tuple[Path, Path]) -> Path:
    """``doppel train persona allen`` through the CLI, on a tiny random Llama as the
    chat model, for a persona whose earlier adapter is gone; returns the config file."""
    home = tmp_path_factory.mktemp("persona-tune")
    folder = persona_dir(home)
    # an adapter since deleted: the persona cannot be served, but it can be trained again
    (folder / "persona.toml").write_text(PERSONA + '[model]\nlora_path = "fine-tune/gone.gguf"\n')
    cfg = at(tiny_config(home, "[train.persona]\nblock_size = 64\nbatch_size = 8\n"
                                      "learning_rate = 0.01\n"),
             home / "personas", f'model_path = "{tiny_base[1]}"\n')
    assert main(["--config", str(cfg), "train", "persona", "allen", "--steps", "6",
                 "--outtype", "f32"]) == 0
    return cfg


def test_train_persona_installs_an_adapter_for_the_chat_model(tuned: Path,
                                                              tiny_base: tuple[Path, Path],
                                                              capsys: Any) -> None:
    config = load_config(tuned)
    persona = load_persona(config.personas.dir / "allen")
    assert persona.model.lora_path == persona.directory / "fine-tune" / "persona-lora.gguf"
    toml = (persona.directory / "persona.toml").read_text()
    assert 'lora_path = "fine-tune/persona-lora.gguf"' in toml  # moves with the folder
    assert toml.startswith(PERSONA)  # the rest stays as written
    assert "gone.gguf" not in toml
    sidecar = lora_sidecar(persona.model.lora_path).read_text()
    assert tiny_base[1].name in sidecar
    work = config.storage.data_dir / "training" / "persona-allen"
    assert (work / "runs" / "persona" / "checkpoint.pt").is_file()
    assert not (persona.directory / "fine-tune" / "adapter").exists()  # checkpoints stay out


def test_one_model_serves_the_adapter_to_its_persona_only(tuned: Path,
                                                          tiny_base: tuple[Path, Path]) -> None:
    """Switched on and off on one loaded model, the adapter gives exactly what it gives on
    a model of its own, and the bare model exactly what it gives alone: nothing computed
    with the other weights (the prompt cache) is reused."""
    config = load_config(tuned)
    lora = load_persona(config.personas.dir / "allen").model.lora_path
    assert lora is not None
    messages = [ChatMessage("system", "You are Phillip."), ChatMessage("user", "rent")]

    def backend() -> LlamaCppBackend:
        llm = LlamaCppBackend(LLMConfig(model_path=tiny_base[1], n_ctx=256, n_threads=2))
        llm.load()
        return llm

    def say(llm: Any) -> tuple[str, float]:
        meter = LogprobMeter()
        text = "".join(llm.stream_chat(messages, GREEDY, lambda: False, meter))
        return text, meter.total

    alone = backend()
    try:
        tuned_alone = alone.with_lora(lora)
        tuned_alone.load()
        reference = say(tuned_alone)
    finally:
        alone.close()
    shared = backend()
    try:
        view = shared.with_lora(lora)
        view.load()
        plain = say(shared)
        assert plain[0] != reference[0]  # the adapter changes what the model says
        for llm, expected in ((view, reference), (shared, plain), (view, reference)):
            text, logprob = say(llm)
            assert text == expected[0] and logprob == pytest.approx(expected[1], abs=1e-4)
    finally:
        shared.close()


def test_the_engine_routes_each_persona_to_its_own_model(tmp_path: Path) -> None:
    """The persona with a fine-tune is answered through it; others and stories are not."""
    folder = persona_dir(tmp_path)
    lora = folder / "fine-tune" / "persona-lora.gguf"
    lora.parent.mkdir()
    lora.write_bytes(b"GGUF")  # the fake model does not read it
    (folder / "persona.toml").write_text(PERSONA + '[model]\nlora_path = "fine-tune/'
                                                   'persona-lora.gguf"\n')
    shutil.copytree(ROOT / "persona_data" / "storyteller", tmp_path / "personas" / "storyteller")
    cfg = at(write_config(tmp_path), tmp_path / "personas")
    llm = FakeLLM()

    async def go() -> None:
        engine = Engine(load_config(cfg), llm=llm)
        await engine.start()
        try:
            assert llm.loras_loaded == [lora]
            for persona in ("allen", "storyteller", "allen"):
                reply = await engine.chat(UserRef("test", "1", "T"), "How are you doing?",
                                          persona=persona)
                await reply.result()
        finally:
            await engine.stop()

    asyncio.run(go())
    assert llm.adapters == [lora, None, lora]


def test_a_missing_adapter_stops_the_start_one_that_cannot_be_served_is_left_out(
        tmp_path: Path, tiny_base: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    folder = persona_dir(tmp_path)
    cfg = at(write_config(tmp_path), tmp_path / "personas")
    toml = folder / "persona.toml"
    toml.write_text(PERSONA + '[model]\nlora_path = "fine-tune/missing.gguf"\n')
    with pytest.raises(ConfigError, match=r"persona.toml: \[model\] lora_path: .*missing.gguf"
                                          r" is not a file .*doppel train persona allen"):
        Engine(load_config(cfg))
    lora = folder / "fine-tune" / "persona-lora.gguf"
    lora.parent.mkdir()
    shutil.copy(tiny_base[1], lora)
    lora_sidecar(lora).write_text('{"base_name": "other.gguf", "base_bytes": 1}')
    toml.write_text(PERSONA + '[model]\nlora_path = "fine-tune/persona-lora.gguf"\n')
    # Trained on another model, or a model server that cannot apply one: the persona
    # answers without it, and the log says why (a persona folder serves any backend).
    engine = Engine(load_config(cfg))
    allen = engine.personas.get("allen")
    assert engine.llm_for(allen) is engine.llm
    assert re.search(r"allen/persona.toml: \[model\] lora_path: persona-lora.gguf was trained "
                     r"on other.gguf.*; allen answers without its fine-tune", caplog.text)
    cfg.write_text(cfg.read_text().replace(
        "[llm]\n", '[llm]\nbackend = "openai"\napi_base = "http://127.0.0.1:9/v1"\n', 1))
    engine = Engine(load_config(cfg))
    assert engine.llm_for(allen) is engine.llm
    assert re.search(r"lora_path: .*cannot apply a LoRA.*; allen answers without", caplog.text)
    assert brief(load_persona(folder)) == "You are Phillip Allen, a gas trader in Houston."


@pytest.mark.model
def test_the_bundled_chat_model_speaks_for_the_persona_with_its_fine_tune(
        tmp_path: Path) -> None:
    """The real thing, briefly: SmolLM2 fine-tuned on the demo persona's mail for two steps,
    then the engine answers the persona through it (and the storyteller without it)."""
    folder = persona_dir(tmp_path)
    shutil.copytree(ROOT / "persona_data" / "storyteller", tmp_path / "personas" / "storyteller")
    cfg = at(tiny_config(tmp_path, "[train.persona]\nbatch_size = 2\n"), tmp_path / "personas")
    assert main(["--config", str(cfg), "train", "persona", "allen", "--steps", "2"]) == 0
    config = load_config(cfg)

    async def go() -> tuple[str, str]:
        engine = Engine(config)
        await engine.start()
        try:
            assert "LoRA persona-lora.gguf" in engine.llm_for(
                engine.personas.get("allen")).description
            assert engine.llm_for(engine.personas.get("storyteller")) is engine.llm
            out = []
            for persona in ("allen", "storyteller"):
                reply = await engine.chat(UserRef("test", "1", "T"), "How is the house going?",
                                          persona=persona, params=GREEDY)
                out.append((await reply.result()).text)
            return out[0], out[1]
        finally:
            await engine.stop()

    allen, tilly = asyncio.run(go())
    assert allen.strip() and tilly.strip()
    assert (folder / "fine-tune" / "persona-lora.gguf").stat().st_size > 1_000_000


def test_hard_wrapped_mail_is_joined_where_the_client_wrapped_it() -> None:
    mail = ("I checked my records and I mailed check #1178 for the normal amount on\n"
            "August 28th. I will go ahead and mail you another check. If the first one\n"
            "shows up you can treat the 2nd as payment.\n"
            "#15 Only paid 95\n#25 short by 35\n\nPhillip")
    assert unwrap(mail) == (
        "I checked my records and I mailed check #1178 for the normal amount on August "
        "28th. I will go ahead and mail you another check. If the first one shows up you "
        "can treat the 2nd as payment.\n#15 Only paid 95\n#25 short by 35\n\nPhillip")
    long_lines = "x" * 120 + "\nshort"
    assert unwrap(long_lines) == long_lines  # never wrapped: left alone
