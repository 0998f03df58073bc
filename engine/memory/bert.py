"""A BERT encoder in plain torch: the architecture of all-MiniLM-L6-v2 and of most
sentence-transformers models, loaded from the model directory's ``model.safetensors``.

Loading it costs the import of torch and one file read; ``transformers.AutoModel`` costs
~2.3 s more of imports on 2 cores (its package, then the model's modules on first use),
and ~150 MB of memory: time every ``doppel ingest`` and every start waits before the first
text is embedded. A directory this does not describe (another architecture, weights in
another format) is left to ``AutoModel``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": functional.gelu,
    "gelu_new": lambda x: functional.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: functional.gelu(x, approximate="tanh"),
    "relu": functional.relu,
}


class _Embeddings(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, ids: Tensor, types: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        out: Tensor = self.LayerNorm(self.word_embeddings(ids)
                                     + self.position_embeddings(positions)
                                     + self.token_type_embeddings(types))
        return out


class _Dense(nn.Module):
    """A projection, added to what came in, normalised (``*.output`` in BERT's names)."""

    def __init__(self, width: int, out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width, out)
        self.LayerNorm = nn.LayerNorm(out, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        out: Tensor = self.LayerNorm(self.dense(x) + residual)
        return out


class _SelfAttention(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        width = c["hidden_size"]
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))


class _Attention(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.heads = c["num_attention_heads"]
        self.self = _SelfAttention(c)
        self.output = _Dense(c["hidden_size"], c["hidden_size"], c["layer_norm_eps"])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, width = x.shape
        q, k, v = (proj(x).view(b, t, self.heads, width // self.heads).transpose(1, 2)
                   for proj in (self.self.query, self.self.key, self.self.value))
        ctx = functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=1 / math.sqrt(width // self.heads))
        out: Tensor = self.output(ctx.transpose(1, 2).reshape(b, t, width), x)
        return out


class _Intermediate(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])


class _Layer(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.act = ACTIVATIONS[c["hidden_act"]]
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _Dense(c["intermediate_size"], c["hidden_size"], c["layer_norm_eps"])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attention(x, mask)
        out: Tensor = self.output(self.act(self.intermediate.dense(x)), x)
        return out


class _Encoder(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))


class Bert(nn.Module):
    """BERT's encoder in eval mode: token ids in, the last hidden state out."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                token_type_ids: Tensor | None = None) -> Tensor:
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x: Tensor = self.embeddings(input_ids, types)
        mask = attention_mask.bool()[:, None, None, :]  # padding is never attended to
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


def load_bert(path: Path, config: dict[str, Any]) -> Bert | None:
    """The model at ``path`` as a ``Bert``; None when it is not one (then ``AutoModel``)."""
    weights = path / "model.safetensors"
    if (config.get("model_type") != "bert" or not weights.is_file()
            or config.get("position_embedding_type", "absolute") != "absolute"
            or config.get("hidden_act") not in ACTIVATIONS):
        return None
    from safetensors.torch import load_file

    c = {"layer_norm_eps": 1e-12, "type_vocab_size": 2, **config}
    model = Bert(c)
    state = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items()}
    wanted = model.state_dict()
    if any(k not in state or state[k].shape != v.shape for k, v in wanted.items()):
        return None
    model.load_state_dict({k: state[k] for k in wanted})
    return model.eval()
