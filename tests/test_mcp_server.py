"""The MCP server through the SDK's own `Client`, over stdio (a `python -m agents.mcp` subprocess) and over streamable
HTTP (`--http --port`), against a running stack (the router over real HTTP, the emulator, moto): list the tools,
claim, write an artifact, transition; read the resources; refusals come back as tool errors carrying the code."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from agents.tools import ALL_ARGUMENTS, ARGUMENTS
from shared.domain.state_machine import Role
from tests.agents import get

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("s3")


def server_env(live, key: str, agent_id: str) -> dict[str, str]:
    return {"QORCH_API_URL": live.url, "QORCH_API_KEY": key, "QORCH_AGENT_ID": agent_id,
            "PATH": os.environ.get("PATH", "")}


async def work_one_step(client: Client, workflow_id: str) -> dict:
    """What an MCP host's model does for one DISCOVERY step; returns what it saw."""
    listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == set(ALL_ARGUMENTS)
    for name, model in ALL_ARGUMENTS.items():  # the same arguments as the runner's tools, no more
        assert set(tools[name].input_schema["properties"]) == set(model.model_fields), name
        assert tools[name].output_schema is not None, "structured results"

    claimed = await client.call_tool("claim_next", {"wait_seconds": 5, "lease_seconds": 120})
    assert not claimed.is_error, claimed.content
    handoff = claimed.structured_content["handoff"]
    assert handoff["workflow_id"] == workflow_id and handoff["status"] == "CLAIMED"
    assert claimed.structured_content["workflow"]["state"] == "DISCOVERY"

    written = await client.call_tool("write_artifact", {"workflow_id": workflow_id, "name": "requirements.md",
                                                        "content": "# Requirements\n- hats\n"})
    assert not written.is_error, written.content
    artifact = written.structured_content
    assert artifact["name"] == "requirements.md" and artifact["size_bytes"] == len("# Requirements\n- hats\n")

    moved = await client.call_tool("transition", {"workflow_id": workflow_id, "to": "PLANNING",
                                                  "note": "Scoped", "artifacts": [artifact["artifact_id"]]})
    assert not moved.is_error, moved.content
    assert moved.structured_content["workflow"]["state"] == "PLANNING"
    assert moved.structured_content["event"]["artifacts"] == [artifact["artifact_id"]]

    # resources: the workflow, its events, the artifact's text
    text = await client.read_resource(f"qorch://workflows/{workflow_id}/artifacts/{artifact['artifact_id']}")
    assert text.contents[0].text == "# Requirements\n- hats\n"
    wf = json.loads((await client.read_resource(f"qorch://workflows/{workflow_id}")).contents[0].text)
    assert wf["state"] == "PLANNING" and wf["version"] == 2
    events = json.loads((await client.read_resource(f"qorch://workflows/{workflow_id}/events")).contents[0].text)
    assert [e["to_state"] for e in events["events"]] == ["DISCOVERY", "PLANNING"]

    # give the work back, then a heartbeat is refused: a tool error carrying the problem's code
    released = await client.call_tool("release", {"workflow_id": workflow_id, "handoff_id": handoff["id"],
                                                  "note": None})
    assert not released.is_error and released.structured_content["status"] == "PENDING"
    lost = await client.call_tool("heartbeat", {"workflow_id": workflow_id, "handoff_id": handoff["id"]})
    assert lost.is_error
    problem = _problem(lost)
    assert problem["code"] == "lease_lost" and problem["handoff_status"] == "PENDING"

    # a model's malformed arguments are a tool error too, and change nothing
    bad = await client.call_tool("transition", {"workflow_id": workflow_id, "to": "NOWHERE"})
    assert bad.is_error
    prompts = await client.list_prompts()
    assert sorted(p.name for p in prompts.prompts) == sorted(r.value.lower() for r in ARGUMENTS_ROLES)
    return {"handoff": handoff, "artifact": artifact}


ARGUMENTS_ROLES = [Role.Q_ASSISTANT, Role.ARCHITECT, Role.DEVELOPER, Role.TESTER, Role.VERIFIER, Role.DEVOPS]
assert set(ARGUMENTS) < set(ALL_ARGUMENTS)


def _problem(result) -> dict:
    text = result.content[0].text
    return json.loads(text[text.index("{"):])


def check_after(api, tenant, workflow_id: str, seen: dict, agent_id: str) -> None:
    handoffs = api.get(f"/v1/workflows/{workflow_id}/handoffs", tenant.owner).body["handoffs"]
    assert [(h["id"], h["status"], h["attempts"]) for h in handoffs] == [(seen["handoff"]["id"], "PENDING", 1)]
    assert seen["handoff"]["agent_id"] == agent_id, "claimed under the configured agent id"
    events = api.get(f"/v1/workflows/{workflow_id}/events", tenant.owner).body["events"]
    assert len(events) == 2, "the refused calls wrote nothing"
    detail = api.get(f"/v1/workflows/{workflow_id}/artifacts/{seen['artifact']['artifact_id']}", tenant.owner).body
    assert get(detail["download"]["url"]) == b"# Requirements\n- hats\n"


def test_over_stdio(api, tenant, live):
    wf = api.create(tenant, title="Hat shop")
    params = StdioServerParameters(command=sys.executable, args=["-m", "agents.mcp"], cwd=str(ROOT),
                                   env=server_env(live, tenant.agents[Role.Q_ASSISTANT], "claude-desktop-1"))

    async def main() -> dict:
        async with Client(params) as client:
            return await work_one_step(client, wf["id"])

    seen = anyio.run(main)
    check_after(api, tenant, wf["id"], seen, "claude-desktop-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(live, tenant):
    port = free_port()
    env = {**os.environ, **server_env(live, tenant.agents[Role.Q_ASSISTANT], "cursor-1"),
           "QORCH_MCP_ALLOWED_HOSTS": "mcp.example.test"}
    proc = subprocess.Popen([sys.executable, "-m", "agents.mcp", "--http", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the MCP HTTP server did not start"
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_over_streamable_http(api, tenant, http_server):
    wf = api.create(tenant, title="Hat shop")

    async def main() -> dict:
        async with Client(f"http://127.0.0.1:{http_server}/mcp") as client:
            return await work_one_step(client, wf["id"])

    seen = anyio.run(main)
    check_after(api, tenant, wf["id"], seen, "cursor-1")


def post_initialize(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/mcp", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                     headers={"Host": host, "Content-Type": "application/json",
                              "Accept": "application/json, text/event-stream"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_http_refuses_hosts_not_on_its_allow_list(http_server):
    assert post_initialize(http_server, "evil.example") == 421  # DNS rebinding: refused before any handler
    assert post_initialize(http_server, "mcp.example.evil") == 421
    assert post_initialize(http_server, "mcp.example.test") != 421  # on the list (QORCH_MCP_ALLOWED_HOSTS)
    assert post_initialize(http_server, f"127.0.0.1:{http_server}") != 421


def test_the_server_will_not_start_without_a_key(live):
    done = subprocess.run([sys.executable, "-m", "agents.mcp"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), "QORCH_API_URL": live.url}, timeout=60)
    assert done.returncode == 2 and "QORCH_API_KEY is not set" in done.stderr
