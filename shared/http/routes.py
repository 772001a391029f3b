"""The public `/v1` paths, the function that serves each, and the models of its request and response. The local
router, `main.py`, the HTTP edge, the OpenAPI document and the deployment checks all read this table."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from pydantic import BaseModel

from shared.domain import agent_models as agents
from shared.domain import models as m

# Ids the product hands out are [A-Za-z0-9_-]; anything else cannot name a document, so it is simply not found.
_PARAM = r"(?P<{name}>[A-Za-z0-9_-]{{1,128}})"


@dataclass(frozen=True)
class Route:
    function: str
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    authenticated: bool = True
    # A call of a signed-in person as such (no account chosen yet: sign-up, accepting an invitation, /v1/me); API
    # keys are refused. Otherwise an authenticated call acts in one account, as a key or a member.
    person_only: bool = False
    errors: tuple[int, ...] = field(default=())
    no_content: str | None = None  # when it may also answer 204 (no body): what that means
    # A POST or PATCH honours Idempotency-Key (a repeat with the same key replays the first response) unless this says
    # why it refuses one (then a request that sends it is 422, and nothing happens).
    idempotency_key_refused: str | None = None

    @property
    def writes(self) -> bool:
        """A method that changes something and takes an Idempotency-Key: POST and PATCH (a DELETE is safe to repeat
        as it is)."""
        return self.method in ("POST", "PATCH")

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", lambda mt: _PARAM.format(name=mt.group(1)), re.escape(self.path))
        # One optional leading segment: behind a gateway a function may see its own name before /v1.
        return re.compile(r"^(?:/[A-Za-z0-9_-]+)?" + regex + r"/?$")

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found else None

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


_WF = "/v1/workflows/{workflow_id}"

ROUTES: tuple[Route, ...] = (
    Route("create_workflow", "POST", "/v1/workflows", "Create a workflow (it starts in DISCOVERY)",
          body=m.CreateWorkflowRequest, response=m.WorkflowView, status=201, errors=(402, 403)),
    Route("list_workflows", "GET", "/v1/workflows", "List the account's workflows, most recently changed first",
          query=m.ListWorkflowsQuery, response=m.WorkflowPage),
    Route("get_workflow", "GET", _WF, "Get one workflow, with its usage totals and budget", response=m.WorkflowView,
          errors=(404,)),
    Route("update_workflow", "PATCH", _WF,
          "Change a workflow's title, description, labels, max_retries or budget (owner only); one event per change",
          body=m.UpdateWorkflowRequest, response=m.UpdateResult, errors=(403, 404)),
    Route("transition_workflow", "POST", _WF + "/transitions", "Move a workflow to another state",
          body=m.TransitionRequest, response=m.ChangeResult, errors=(403, 404, 409)),
    Route("rollback_workflow", "POST", _WF + "/rollback",
          "Return a workflow to the state it had after an earlier version (owner only)",
          body=m.RollbackRequest, response=m.ChangeResult, errors=(403, 404, 409)),
    Route("list_workflow_events", "GET", _WF + "/events", "The workflow's audit log, oldest first",
          query=m.PageQuery, response=m.EventPage, errors=(404,)),
    Route("get_workflow_context", "GET", _WF + "/context",
          "Everything an agent needs for the current step: instructions, task, hand-off, artifacts with download "
          "URLs, history, allowed transitions and tools (the owner, or a key holding the workflow's role)",
          query=agents.ContextQuery, response=agents.AgentContext, errors=(403, 404)),
    # hand-offs and the agent work queue
    Route("claim_handoff", "POST", "/v1/handoffs/claim",
          "Claim the oldest hand-off waiting for the caller's roles, under a lease (long poll with wait_seconds)",
          body=m.ClaimRequest, response=m.ClaimResult, errors=(403, 409), no_content="No work for these roles"),
    Route("heartbeat_handoff", "POST", _WF + "/handoffs/{handoff_id}/heartbeat",
          "Extend the lease of the caller's claim", body=m.HeartbeatRequest, response=m.Handoff,
          errors=(404, 409)),
    Route("release_handoff", "POST", _WF + "/handoffs/{handoff_id}/release",
          "Give the claimed work back to the queue (the holder, or an owner)", body=m.ReleaseRequest,
          response=m.Handoff, errors=(404, 409)),
    Route("list_handoffs", "GET", _WF + "/handoffs", "The workflow's hand-offs, newest first",
          query=m.PageQuery, response=m.HandoffPage, errors=(404,)),
    # artifacts
    Route("create_artifact", "POST", _WF + "/artifacts",
          "Declare an artifact and get a presigned PUT URL for its bytes (15 minutes)",
          body=m.CreateArtifactRequest, response=m.ArtifactCreated, status=201, errors=(403, 404, 409, 413)),
    Route("complete_artifact", "POST", _WF + "/artifacts/{artifact_id}/complete",
          "Check the uploaded bytes (size, SHA-256) and make the artifact AVAILABLE", response=m.ArtifactDetail,
          errors=(404, 409, 422)),
    Route("get_artifact", "GET", _WF + "/artifacts/{artifact_id}",
          "An artifact's metadata, with a presigned download URL (15 minutes) when AVAILABLE",
          response=m.ArtifactDetail, errors=(404,)),
    Route("list_artifacts", "GET", _WF + "/artifacts", "The workflow's artifacts, newest first",
          query=m.PageQuery, response=m.ArtifactPage, errors=(404,)),
    Route("get_account", "GET", "/v1/account",
          "The caller's account: plan, entitlement (and why), the plan's limits and current usage",
          response=m.AccountView),
    Route("create_checkout_session", "POST", "/v1/billing/checkout-session",
          "Start a subscription: a Stripe Checkout Session for the plan's price (owner only)",
          body=m.CheckoutSessionRequest, response=m.CheckoutSession, errors=(403, 409, 502)),
    Route("create_portal_session", "POST", "/v1/billing/portal-session",
          "Manage billing: a Stripe Billing Portal session (owner only)", response=m.PortalSession,
          errors=(403, 409, 422, 502)),
    # people, members and keys
    Route("get_me", "GET", "/v1/me",
          "The signed-in person: their accounts (with roles) and the invitations waiting for their email",
          response=m.Me, person_only=True),
    Route("create_account", "POST", "/v1/accounts",
          "Sign up: a signed-in person with no account creates one and becomes its OWNER (not entitled until it "
          "pays)", body=m.CreateAccountRequest, response=m.AccountView, status=201, person_only=True,
          errors=(403, 409)),
    Route("list_members", "GET", "/v1/members", "The account's members and pending invitations (owner or viewer)",
          response=m.MemberList, errors=(403,)),
    Route("invite_member", "POST", "/v1/members",
          "Invite a person by email with roles (owner only); they join by accepting", body=m.InviteMemberRequest,
          response=m.InvitationView, status=201, errors=(403,)),
    Route("accept_invitation", "POST", "/v1/members/accept",
          "Join the account that invited your verified email", body=m.AcceptInvitationRequest,
          response=m.MemberView, person_only=True, errors=(403, 404, 409)),
    Route("update_member", "PATCH", "/v1/members/{member_id}", "Change a member's roles (owner only)",
          body=m.UpdateMemberRequest, response=m.MemberView, errors=(403, 404, 409)),
    Route("remove_member", "DELETE", "/v1/members/{member_id}",
          "Remove a member, or withdraw an invitation (inv_ id) (owner only); never the last owner",
          status=204, errors=(403, 404, 409)),
    Route("create_key", "POST", "/v1/keys", "Create an API key (owner only); the answer shows its secret once",
          body=m.CreateKeyRequest, response=m.ApiKeyCreated, status=201, errors=(403,)),
    Route("list_keys", "GET", "/v1/keys", "The account's API keys, never their secrets (owner or viewer)",
          response=m.KeyList, errors=(403,)),
    Route("revoke_key", "DELETE", "/v1/keys/{key_id}",
          "Revoke an API key at once (owner only); other instances stop accepting it within the key cache's TTL",
          response=m.ApiKeyView, errors=(403, 404)),
    Route("stripe_webhook", "POST", "/v1/stripe/webhook",
          "Stripe's event deliveries, authenticated by the Stripe-Signature header (not an API key)",
          response=m.WebhookReceipt, authenticated=False, errors=(400, 409, 413, 422, 503),
          idempotency_key_refused="Stripe's deliveries are made idempotent by their event id (a redelivery is "
                                  "answered `duplicate`)"),
    Route("describe_state_machine", "GET", "/v1/state-machine", "The state machine table and its Mermaid diagram",
          authenticated=False),
    Route("get_openapi", "GET", "/v1/openapi.json", "This API's OpenAPI 3.1 document", authenticated=False),
    Route("list_agent_tools", "GET", "/v1/agent-tools",
          "The agent's operations as tool definitions, in the shape the OpenAI or Anthropic SDK sends (no key)",
          query=agents.AgentToolsQuery, response=agents.AgentTools, authenticated=False),
)

BY_FUNCTION: dict[str, Route] = {r.function: r for r in ROUTES}


def routes_for(path: str) -> list[Route]:
    """The routes that serve the concrete path `path`: where a literal segment and a parameter both match
    (/v1/members/accept and /v1/members/{member_id}), the literal one alone, as API Gateway matches paths."""
    matching = [r for r in ROUTES if r.match(path) is not None]
    fewest = min((len(r.params) for r in matching), default=0)
    return [r for r in matching if len(r.params) == fewest]
