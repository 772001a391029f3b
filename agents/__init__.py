"""AI agents on qorch: a client of the public /v1 API, the tool executor models call, model providers on the official
SDKs (plus a scripted one), the agent runner (`python -m agents.runner`) and the MCP server (`python -m agents.mcp`).

Nothing under `shared/`, `functions/` or `main.py` imports this package (tests/test_cold_start.py holds that): its
heavy dependencies (`anthropic`, `openai`, `mcp`) are in requirements-agents.txt, not in the functions' image.
"""
