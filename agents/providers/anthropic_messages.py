"""Anthropic's Messages API with `tool_use` / `tool_result`, through the official `anthropic` SDK.

Every `tool_use` block of an assistant turn is answered in the next user message by a `tool_result` block with the
same `tool_use_id` (errors with `is_error: true`), in the order the model sent them: the API refuses a conversation
that leaves one unanswered.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic

from agents.providers import ModelReply, ProviderError, ToolCall, ToolResult, usage_entry


class AnthropicProvider:
    name = "anthropic"
    tool_format = "anthropic"

    def __init__(self, model: str, *, max_tokens: int = 8192) -> None:
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise ProviderError("ANTHROPIC_API_KEY is not set (the key is read from the environment only)")
        self.model = model
        self.max_tokens = max_tokens
        # Each call of a tool loop re-sends the conversation so far: caching its prefix makes the re-sent part cost a
        # tenth (cache reads). Off for an Anthropic-compatible endpoint that does not take the field.
        caching = os.environ.get("QORCH_ANTHROPIC_PROMPT_CACHE", "on").lower() not in ("off", "0", "false", "no")
        self.extra: dict[str, Any] = {"cache_control": {"type": "ephemeral"}} if caching else {}
        # The SDK reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL itself; it retries 408/409/429/5xx (twice).
        self.client = anthropic.Anthropic()

    def conversation(self, system: str, task: str, tools: list[dict[str, Any]]) -> AnthropicConversation:
        return AnthropicConversation(self, system, task, tools)


class AnthropicConversation:
    def __init__(self, provider: AnthropicProvider, system: str, task: str, tools: list[dict[str, Any]]) -> None:
        self.provider = provider
        self.system = system
        self.tools = tools
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": task}]

    def next(self) -> ModelReply:
        p = self.provider
        try:
            message = p.client.messages.create(model=p.model, max_tokens=p.max_tokens, system=self.system,
                                               messages=self.messages, tools=self.tools, **p.extra)
        except anthropic.APIError as exc:
            raise ProviderError(_describe(exc)) from exc
        content: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        texts: list[str] = []
        for block in message.content:
            if block.type == "text":
                content.append({"type": "text", "text": block.text})
                texts.append(block.text)
            elif block.type == "tool_use":
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
                calls.append(ToolCall(block.id, block.name, block.input))
            else:  # thinking and other blocks go back exactly as they came (thinking must, with its signature)
                content.append(block.model_dump(mode="json", exclude_none=True))
        # An assistant turn may not be empty when it is sent back.
        self.messages.append({"role": "assistant", "content": content or [{"type": "text", "text": "(no reply)"}]})
        u = message.usage
        # Cache writes are billed as (dearer) input; reads separately. cost_usd is left to qorch's price table.
        usage = usage_entry(message.model or p.model, u.input_tokens + (u.cache_creation_input_tokens or 0),
                            u.output_tokens, u.cache_read_input_tokens or 0)
        return ModelReply(tool_calls=calls, text="\n".join(texts), usage=usage)

    def add_tool_results(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        blocks = [{"type": "tool_result", "tool_use_id": call.id, "content": result.text(),
                   **({} if result.ok else {"is_error": True})} for call, result in results]
        self.messages.append({"role": "user", "content": blocks})

    def add_user_text(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})


def _describe(exc: anthropic.APIError) -> str:
    status = getattr(exc, "status_code", None)
    return f"Anthropic API: {type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {exc.message}"
