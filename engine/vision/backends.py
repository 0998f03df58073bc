"""Vision models that describe a photo: an OpenAI-compatible server, or a multimodal GGUF
with its projector through llama.cpp (libmtmd). Both block their worker thread."""

from __future__ import annotations

import base64
import logging
import os
import threading
from typing import Any, Protocol

import httpx

from engine.config import VisionConfig
from engine.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

PROMPT = ("Describe this photo for someone who will write a children's story about it: who "
          "or what is in it, what they are doing, the place, the colours and the mood. Two "
          "or three plain sentences, nothing else.")
MAX_TOKENS = 200


class VisionBackend(Protocol):
    @property
    def description(self) -> str: ...

    def load(self) -> None: ...

    def describe(self, jpeg: bytes) -> str: ...

    def close(self) -> None: ...


def _message(jpeg: bytes) -> list[dict[str, Any]]:
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return [{"role": "user", "content": [{"type": "text", "text": PROMPT},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


class OpenAIVision:
    def __init__(self, cfg: VisionConfig) -> None:
        self.base = cfg.api_base.rstrip("/")
        self.model = cfg.api_model
        key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
        self._client = httpx.Client(base_url=self.base, timeout=httpx.Timeout(
            cfg.timeout_s, connect=10.0), headers={"Authorization": f"Bearer {key}"} if key
                                    else {})

    @property
    def description(self) -> str:
        return f"vision server {self.base} ({self.model or 'its first model'})"

    def load(self) -> None:
        if self.model:
            return
        try:
            response = self._client.get("/models")
            response.raise_for_status()
            self.model = response.json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"[vision] api_base {self.base} did not list a model ({exc}); "
                             "set [vision] api_model") from exc

    def describe(self, jpeg: bytes) -> str:
        try:
            response = self._client.post("/chat/completions", json={
                "model": self.model, "messages": _message(jpeg), "max_tokens": MAX_TOKENS,
                "temperature": 0.2, "stream": False})
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"the vision server failed: {exc}") from exc

    def close(self) -> None:
        self._client.close()


class LlamaCppVision:
    """A multimodal GGUF and its projector; the model's own chat template places the image."""

    def __init__(self, cfg: VisionConfig) -> None:
        assert cfg.model_path is not None and cfg.mmproj_path is not None
        self.cfg = cfg
        self._llm: Any = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"llama.cpp vision {self.cfg.model_path} + {self.cfg.mmproj_path}"

    def load(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import MTMDChatHandler

            cfg = self.cfg
            try:
                handler = MTMDChatHandler(clip_model_path=str(cfg.mmproj_path), verbose=False)
                llm = Llama(model_path=str(cfg.model_path), chat_handler=handler,
                            n_ctx=cfg.n_ctx, n_gpu_layers=cfg.n_gpu_layers, verbose=False)
            except Exception as exc:
                raise ConfigError(f"[vision] model_path {cfg.model_path}: llama.cpp could "
                                  f"not load it ({exc})") from exc
            try:
                handler._init_mtmd_context(llm)  # at start, not on the first photo
            except Exception as exc:
                llm.close()
                raise ConfigError(f"[vision] mmproj_path {cfg.mmproj_path}: not a vision "
                                  f"projector for {cfg.model_path} ({exc})") from exc
            self._llm = llm

    def describe(self, jpeg: bytes) -> str:
        self.load()
        out = self._llm.create_chat_completion(messages=_message(jpeg), max_tokens=MAX_TOKENS,
                                               temperature=0.2)
        return str(out["choices"][0]["message"]["content"] or "")

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def make_vision(cfg: VisionConfig) -> VisionBackend | None:
    if cfg.backend == "openai":
        return OpenAIVision(cfg)
    if cfg.backend == "llama_cpp":
        return LlamaCppVision(cfg)
    return None
