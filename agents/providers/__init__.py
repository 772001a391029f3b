"""Model providers: one conversation per step, in the provider's own wire format, through its official SDK.

A conversation starts from the context's `instructions` (system prompt) and `task` (first user message) and the tool
definitions qorch serves in that provider's format (`GET /v1/agent-tools?format=...`). `next()` is one model call;
the runner executes the tool calls it returns and answers each with `add_tool_results`. Each reply carries the
call's usage as qorch records it: `{"model", "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd"}`.

The SDKs are imported only by the provider that uses them, so a scripted runner never loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

PROVIDERS = ("anthropic", "openai", "scripted")
OPENAI_APIS = ("chat", "responses")  # Chat Completions, or the Responses API
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4.1", "scripted": "scripted"}


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | str  # as the model sent them: an object (Anthropic) or a JSON string (OpenAI)


@dataclass
class ModelReply:
    tool_calls: list[ToolCall] = field(default_factory=list)
    text: str = ""
    usage: dict[str, Any] | None = None


class ProviderError(Exception):
    """The model API failed after the SDK's own retries (5xx, 429s that did not clear, a refused request)."""


class ToolResult(Protocol):
    @property
    def ok(self) -> bool: ...

    def text(self) -> str: ...


class Conversation(Protocol):
    def next(self) -> ModelReply: ...

    def add_tool_results(self, results: list[tuple[ToolCall, ToolResult]]) -> None: ...

    def add_user_text(self, text: str) -> None: ...


class Provider(Protocol):
    name: str
    model: str
    tool_format: str | None  # the format of GET /v1/agent-tools this provider sends; None: it needs none

    def conversation(self, system: str, task: str, tools: list[dict[str, Any]]) -> Conversation: ...


def usage_entry(model: str, input_tokens: int, output_tokens: int, cache_read_tokens: int | None,
                cost_usd: float | None = None) -> dict[str, Any]:
    return {"model": model, "input_tokens": max(0, input_tokens), "output_tokens": max(0, output_tokens),
            "cache_read_tokens": cache_read_tokens, "cost_usd": cost_usd}


def make_provider(name: str, model: str | None = None, *, openai_api: str = "chat",
                  max_tokens: int = 8192) -> Provider:
    """The provider `name` with `model` (or its default). Keys and base URLs come from the environment
    (ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, OPENAI_API_KEY / OPENAI_BASE_URL), read by the SDKs themselves."""
    model = model or DEFAULT_MODELS[name]
    if name == "anthropic":
        from agents.providers.anthropic_messages import AnthropicProvider

        return AnthropicProvider(model, max_tokens=max_tokens)
    if name == "openai":
        from agents.providers.openai_api import OpenAIProvider

        if openai_api not in OPENAI_APIS:
            raise ValueError(f"unknown OpenAI API {openai_api!r}; one of {', '.join(OPENAI_APIS)}")
        return OpenAIProvider(model, responses=openai_api == "responses")
    if name == "scripted":
        from agents.providers.scripted import ScriptedProvider

        return ScriptedProvider(model)
    raise ValueError(f"unknown provider {name!r}; one of {', '.join(PROVIDERS)}")
