"""OpenAI's Chat Completions or Responses API with function calls, through the official `openai` SDK.

Any server that speaks these (a proxy, vLLM, Ollama) works through OPENAI_BASE_URL. Each call's full conversation is
sent (no server-side state), so a stateless compatible server works too.
"""

from __future__ import annotations

import os
from typing import Any

import openai

from agents.providers import ModelReply, ProviderError, ToolCall, ToolResult, usage_entry


class OpenAIProvider:
    name = "openai"

    def __init__(self, model: str, *, responses: bool = False) -> None:
        if not os.environ.get("OPENAI_API_KEY"):
            raise ProviderError("OPENAI_API_KEY is not set (the key is read from the environment only; a local "
                                "server that needs none takes any value)")
        self.model = model
        self.responses = responses
        self.tool_format = "openai-responses" if responses else "openai"
        # The SDK reads OPENAI_API_KEY and OPENAI_BASE_URL itself; it retries 408/409/429/5xx (twice).
        self.client = openai.OpenAI()

    def conversation(self, system: str, task: str, tools: list[dict[str, Any]]) -> ChatConversation | \
            ResponsesConversation:
        kind = ResponsesConversation if self.responses else ChatConversation
        return kind(self, system, task, tools)


class ChatConversation:
    def __init__(self, provider: OpenAIProvider, system: str, task: str, tools: list[dict[str, Any]]) -> None:
        self.provider = provider
        self.tools = tools
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": system},
                                               {"role": "user", "content": task}]

    def next(self) -> ModelReply:
        p = self.provider
        try:
            # No token cap: the parameter's name differs between OpenAI and compatible servers (max_tokens).
            completion = p.client.chat.completions.create(model=p.model, messages=self.messages, tools=self.tools)
        except openai.APIError as exc:
            raise ProviderError(_describe(exc)) from exc
        if not completion.choices:
            raise ProviderError("OpenAI API: an answer without choices")
        message = completion.choices[0].message
        calls = [ToolCall(c.id, c.function.name, c.function.arguments)
                 for c in message.tool_calls or [] if c.type == "function"]
        said: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if calls:
            said["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        self.messages.append(said)
        return ModelReply(tool_calls=calls, text=message.content or "",
                          usage=_usage(completion.model or p.model, completion.usage, chat=True))

    def add_tool_results(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        # A failure's text is a JSON object {"error": {...code...}}: Chat Completions has no error flag.
        self.messages.extend({"role": "tool", "tool_call_id": call.id, "content": result.text()}
                             for call, result in results)

    def add_user_text(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})


class ResponsesConversation:
    def __init__(self, provider: OpenAIProvider, system: str, task: str, tools: list[dict[str, Any]]) -> None:
        self.provider = provider
        self.instructions = system
        self.tools = tools
        self.input: list[dict[str, Any]] = [{"role": "user", "content": task}]

    def next(self) -> ModelReply:
        p = self.provider
        try:
            response = p.client.responses.create(model=p.model, instructions=self.instructions, input=self.input,
                                                 tools=self.tools)
        except openai.APIError as exc:
            raise ProviderError(_describe(exc)) from exc
        if response.error is not None:
            raise ProviderError(f"OpenAI Responses API: {response.error.code}: {response.error.message}")
        calls: list[ToolCall] = []
        for item in response.output:
            # Every output item goes back as input (function calls must precede their outputs).
            self.input.append(item.model_dump(mode="json", exclude_none=True))
            if item.type == "function_call":
                calls.append(ToolCall(item.call_id, item.name, item.arguments))
        return ModelReply(tool_calls=calls, text=response.output_text,
                          usage=_usage(response.model or p.model, response.usage, chat=False))

    def add_tool_results(self, results: list[tuple[ToolCall, ToolResult]]) -> None:
        self.input.extend({"type": "function_call_output", "call_id": call.id, "output": result.text()}
                          for call, result in results)

    def add_user_text(self, text: str) -> None:
        self.input.append({"role": "user", "content": text})


def _usage(model: str, usage: Any, *, chat: bool) -> dict[str, Any] | None:
    """OpenAI counts cached prompt tokens inside the prompt's tokens: qorch records them apart, so input_tokens is
    the uncached rest (each token priced once)."""
    if usage is None:
        return None
    if chat:
        details, prompt, output = usage.prompt_tokens_details, usage.prompt_tokens, usage.completion_tokens
    else:
        details, prompt, output = usage.input_tokens_details, usage.input_tokens, usage.output_tokens
    cached = (details.cached_tokens or 0) if details is not None else 0
    return usage_entry(model, prompt - cached, output, cached)


def _describe(exc: openai.APIError) -> str:
    status = getattr(exc, "status_code", None)
    return f"OpenAI API: {type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {exc.message}"
