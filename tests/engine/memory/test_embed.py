"""The embedder on the real all-MiniLM-L6-v2: the same vectors as sentence-transformers,
bfloat16 within reach of float32, input order kept through the length sort, long texts
by windows, and parts of a text pooled from its own pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.memory.bert import Bert, load_bert
from engine.memory.embed import BATCH_WIDTH, Embedder, _batches, _padded, cpu_has_bf16

TEXTS = [
    "Vince, the quarterly review is moved to Thursday at 3 pm in EB 19C2.",
    "Thanks!",
    "We need to price the weather derivatives before the Houston meeting; please send the "
    "model and the data you used for the winter contracts, with the volatility surface.",
    "Lunch?",
    "The research group will present the credit risk model to the board in October, and "
    "I would like you to join us for the dry run the week before.",
]


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    e = Embedder(precision="fp32")
    e.load()
    return e


def test_float32_gives_the_vectors_of_sentence_transformers(fp32: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(fp32.model_path), device="cpu")
    want = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = fp32.embed(TEXTS)
    assert got.shape == (len(TEXTS), 384)
    assert np.allclose(got, want, atol=1e-5)


def test_the_length_sort_keeps_each_vector_with_its_text(fp32: Embedder) -> None:
    together = fp32.embed(TEXTS)
    alone = np.stack([fp32.embed([t])[0] for t in TEXTS])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    assert fp32.embed([]).shape == (0, 384)


def test_bfloat16_vectors_are_float32s_within_a_rounding(fp32: Embedder) -> None:
    bf16 = Embedder(precision="bf16")
    bf16.load()
    assert bf16.model.dtype_name == "bfloat16"
    cosine = (bf16.embed(TEXTS) * fp32.embed(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.999, cosine


def test_a_text_over_the_window_is_the_mean_of_its_windows(fp32: Embedder) -> None:
    long = " ".join(TEXTS * 12)
    assert fp32.count_tokens(long) > fp32.max_tokens
    pieces = Embedder._windows(long, fp32.count_tokens(long), fp32.max_tokens - 2)
    assert len(pieces) >= 2 and all(fp32.count_tokens(p) <= fp32.max_tokens - 2
                                    for p in pieces)
    mean = fp32.embed(pieces).sum(axis=0)
    assert np.allclose(fp32.embed([long])[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_tokens_counted_at_once_are_the_tokens_counted_one_by_one(fp32: Embedder) -> None:
    assert fp32.count_many(TEXTS) == [fp32.count_tokens(t) for t in TEXTS]
    assert fp32.count_tokens("Thanks!") == 2  # "thanks", "!": no [CLS] or [SEP]


def test_bfloat16_is_chosen_only_where_the_cpu_has_it(tmp_path: Path) -> None:
    with_it = tmp_path / "zen4"
    with_it.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    without = tmp_path / "skylake"
    without.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_bf16(with_it)
    assert not cpu_has_bf16(without)
    assert not cpu_has_bf16(tmp_path / "none")


def test_a_part_is_pooled_from_its_own_tokens_in_the_texts_pass(fp32: Embedder) -> None:
    first, second = TEXTS[0], TEXTS[2]
    text = f"{first} {second}"
    a, b = (0, len(first)), (len(first) + 1, len(text))
    vectors, parts = fp32.embed_parts([text, TEXTS[1]], [[[a], [b], [a, b]], []])
    assert np.allclose(vectors, fp32.embed([text, TEXTS[1]]), atol=1e-5)
    assert parts[0].shape == (3, 384) and parts[1].shape == (0, 384)
    assert np.allclose(np.linalg.norm(parts[0], axis=1), 1, atol=1e-5)
    # every token: the text's own mean pooling
    assert np.allclose(parts[0][2], vectors[0], atol=1e-5)
    alone = fp32.embed([first, second])
    assert alone[0] @ parts[0][0] > alone[1] @ parts[0][0] + 0.2
    assert alone[1] @ parts[0][1] > alone[0] @ parts[0][1] + 0.2


def test_parts_stay_with_their_text_through_the_length_sort(fp32: Embedder) -> None:
    spans = [[[(0, len(t) // 2)], [(len(t) // 2, len(t))]] for t in TEXTS]
    _, together = fp32.embed_parts(TEXTS, spans)
    for text, ranges, got in zip(TEXTS, spans, together, strict=True):
        assert np.allclose(fp32.embed_parts([text], [ranges])[1][0], got, atol=1e-5)


def test_the_parts_of_a_text_over_the_window_are_embedded_alone(fp32: Embedder) -> None:
    long = " ".join(TEXTS * 12)
    part = [(0, len(TEXTS[0])), (len(long) - len(TEXTS[-1]), len(long))]
    vectors, parts = fp32.embed_parts([long], [[part]])
    assert np.allclose(vectors[0], fp32.embed([long])[0], atol=1e-5)
    assert np.allclose(parts[0][0], fp32.embed([f"{TEXTS[0]} {TEXTS[-1]}"])[0], atol=1e-5)


def test_the_bundled_bert_runs_without_transformers(fp32: Embedder) -> None:
    assert isinstance(fp32.model.net, Bert)  # the sentence-transformers match above is its


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_bert_gives_the_hidden_states_of_transformers(tmp_path: Path, act: str) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, hidden_act=act,
                        max_position_embeddings=64)
    BertModel(config).save_pretrained(tmp_path)  # model.safetensors, random weights
    reference = BertModel.from_pretrained(tmp_path)
    reference.eval()  # type: ignore[no-untyped-call]
    ours = load_bert(tmp_path, config.to_dict())
    assert ours is not None
    ids = torch.randint(1, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    with torch.inference_mode():
        want = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(input_ids=ids, attention_mask=mask)
    keep = mask.bool()  # padding's own states are never pooled
    assert torch.allclose(got[keep], want[keep], atol=1e-5)
    assert not torch.allclose(got[keep], torch.zeros_like(got[keep]), atol=1e-2)


def test_another_architecture_is_left_to_transformers(tmp_path: Path, fp32: Embedder) -> None:
    import shutil

    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=4, hidden_dim=64)
    DistilBertModel(config).save_pretrained(tmp_path)
    shutil.copy(fp32.model_path / "tokenizer.json", tmp_path)
    assert load_bert(tmp_path, config.to_dict()) is None
    other = Embedder(tmp_path, precision="fp32")
    vectors = other.embed(TEXTS[:2])
    assert not isinstance(other.model.net, Bert)
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_forward_passes_hold_a_budget_of_tokens_not_a_number_of_texts() -> None:
    lengths = [5] * 70 + [40] * 30 + [120] * 9 + [300]  # chunks of a mailbox, sorted
    order = list(range(len(lengths)))
    passes = list(_batches(order, lengths, 16))
    assert [i for rows in passes for i in rows] == order  # every text once, in order
    budget = 16 * BATCH_WIDTH
    for rows in passes:
        assert len(rows) <= 64
        assert len(rows) == 1 or len(rows) * _padded(max(lengths[i] for i in rows)) <= budget
    assert len(passes[0]) == 64  # short texts: many to a pass
    assert max(len(r) for r in passes if lengths[r[0]] == 120) == budget // 120
    assert passes[-1] == [len(lengths) - 1]  # one over the budget goes alone
