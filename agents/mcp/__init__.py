"""qorch's MCP server: `python -m agents.mcp` (stdio) or `python -m agents.mcp --http --port 8765` (streamable
HTTP). See agents/mcp/server.py and docs/agents.md."""
