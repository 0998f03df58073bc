"""Language-model backends behind one interface; the engine never calls a model directly."""

from engine.llm.base import ChatMessage, Completion, LLMBackend, SamplingParams

__all__ = ["ChatMessage", "Completion", "LLMBackend", "SamplingParams"]
