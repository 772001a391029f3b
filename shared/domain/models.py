"""Pydantic models: the stored documents (domain entities) and the API's request and response bodies.

The OpenAPI document is generated from these (see `shared.http.openapi`), so they are the one description of the API's
shapes. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.domain.pricing import ModelCall, Tally, Usage, UsageTotals
from shared.domain.state_machine import Role, State

LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,63}$")]
LabelValue = Annotated[str, StringConstraints(max_length=256)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=20)]


class RequestModel(BaseModel):
    """Request bodies: unknown fields are refused and types are not coerced ("3" is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EventType(StrEnum):
    CREATED = "CREATED"
    TRANSITIONED = "TRANSITIONED"
    ROLLED_BACK = "ROLLED_BACK"
    UPDATED = "UPDATED"  # the owner changed title, description, labels, max_retries or max_cost_usd (PATCH)


class HandoffStatus(StrEnum):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class ArtifactStatus(StrEnum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    AVAILABLE = "AVAILABLE"


# An agent process's own name for itself (host:pid, pod name, uuid...): together with the key it identifies a holder.
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:@/-]{1,128}$")]
ArtifactId = Annotated[str, StringConstraints(pattern=r"^art_[0-9a-f]{32}$")]


class CurrentHandoff(BaseModel):
    """The workflow's open hand-off, kept on the workflow document in the same commits that change the hand-off,
    so a transition checks the lease without reading the hand-off."""

    id: str
    status: HandoffStatus
    claimed_by: str | None = Field(default=None, description="The holder: its key id, or user:<uid> for a person")
    agent_id: str | None = None
    lease_expires_at: datetime | None = None
    usage: UsageTotals | None = Field(
        default=None, description="Usage its heartbeats reported that no event carries yet (the next event of the "
                                  "hand-off takes it)")


# A budget, in USD: up to a million per workflow, kept to the nano-dollar.
MaxCost = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


class UsageRecord(BaseModel):
    """A workflow's running usage totals as stored (`workflow.usage`): overall and per role (role name → totals),
    exact integers (`pricing.Tally`), changed in the same commit as the event or hand-off that reports the usage."""

    total: Tally = Field(default_factory=Tally)
    by_role: dict[str, Tally] = Field(default_factory=dict)
    reported_at: datetime | None = None  # when usage was last added: the month its account totals went to


# ---- stored documents -------------------------------------------------------------------------------------------


class Workflow(BaseModel):
    """A workflow as stored (accounts/{account_id}/workflows/{id})."""

    id: str
    account_id: str
    title: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    state: State
    role: Role | None
    version: int
    retry_count: int = 0
    max_retries: int = 3
    created_at: datetime
    updated_at: datetime
    created_by: str
    final: bool = False
    # The account's plan, set at creation (cleanup re-tags it when the account changes plan): each plan's cleanup
    # query is then exact, so a run reads only what is due.
    plan: str = "dev"
    current_handoff: CurrentHandoff | None = None
    # Artifacts attached by transitions that stayed within one role: the next hand-off carries them on.
    outgoing_artifacts: list[str] = Field(default_factory=list)
    max_cost_usd: float | None = None  # the budget (None: none)
    usage: UsageRecord = Field(default_factory=UsageRecord)

    def to_document(self, *, exclude: set[str] | None = None) -> dict:
        doc = self.model_dump(mode="python", exclude=exclude)
        # One array of "key:value" pairs lets `label=k:v` be a single array-contains query with a fixed index.
        doc["label_pairs"] = [f"{k}:{v}" for k, v in sorted(self.labels.items())]
        return doc


class EventUsage(BaseModel):
    """What the AI work of one step cost, as its event records it."""

    role: Role = Field(description="The role the work was done for")
    calls: list[ModelCall] = Field(
        default_factory=list, description="The transition's own model calls as reported, each priced (cost_usd from "
                                          "the price table when the agent sent none; null: a model the table lacks)")
    heartbeats: UsageTotals | None = Field(
        default=None, description="Usage the hand-off's heartbeats reported since its last event, folded in here")
    total: UsageTotals = Field(description="calls + heartbeats")


class FieldChange(BaseModel):
    before: Any
    after: Any


class Event(BaseModel):
    """One entry of a workflow's audit log (…/workflows/{id}/events/{seq:010d})."""

    seq: int
    type: EventType
    from_state: State | None
    to_state: State
    actor: str = Field(description="key_<id> for an API key, user:<uid> for a person, system:<task> for the service")
    actor_email: str | None = Field(default=None, description="A person's verified email (actor user:<uid>)")
    reason: str = ""
    note: str = ""
    at: datetime
    retries_reset: bool = Field(default=False, description="ROLLED_BACK only: retry_count was set back to 0.")
    artifacts: list[str] = Field(default_factory=list, description="Artifact ids the transition attached.")
    usage: EventUsage | None = Field(default=None, description="What the AI work of this step cost, if reported.")
    playbook_version: str | None = Field(
        default=None, description="The playbook of the agent role the actor acted in (sha256:<hex>); null for an "
                                  "owner's or the system's event.")
    changes: dict[str, FieldChange] | None = Field(
        default=None, description="UPDATED only: each field changed, with its value before and after.")


class Subscription(BaseModel):
    """A Stripe subscription as its account keeps it (`accounts/{id}.subscriptions[sub_id]`): what the events said,
    and the ordering key of the last event applied (see `shared.domain.billing`)."""

    id: str
    customer: str | None = None
    status: str  # Stripe's: active, trialing, past_due, unpaid, canceled, incomplete, incomplete_expired, paused
    price_id: str | None = None
    plan: str | None = None  # the plan sold at price_id; None while unknown
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    last_event_created: int | None = None  # Stripe `created` (Unix seconds) of the last event applied
    last_event_rank: int = -1  # breaks ties within one second: invoice < created < updated < deleted
    last_event_id: str | None = None
    updated_at: datetime


class Account(BaseModel):
    id: str
    name: str
    plan: str = "dev"
    # The operator's grant (admin command). It decides only for accounts with no Stripe subscription; once Stripe
    # has linked one, the subscriptions below decide (see `shared.domain.billing.standing`).
    entitled: bool = False
    created_at: datetime
    # Workflows in an active state (not COMPLETED, CANCELLED or FAILED): kept in the same commits that change it,
    # so a plan quota can be enforced with one read of this document.
    active_workflows: int = 0
    # Billing, kept by the Stripe webhook and the checkout endpoint.
    stripe_customer_id: str | None = None
    former_stripe_customers: list[str] = Field(default_factory=list)  # deleted in Stripe: they grant nothing again
    # When each was deleted (Stripe `created` of its customer.deleted): its events up to then still say what its
    # (canceled) subscriptions were; later ones are stale. Absent for deletions recorded before it was kept.
    former_stripe_customers_deleted: dict[str, int] = Field(default_factory=dict)
    subscriptions: dict[str, Subscription] = Field(default_factory=dict)
    # The members holding OWNER, kept in the same commits that change a member: removing or demoting the last one is
    # refused, and the account's update time serialises such changes (see `shared.services.members`).
    owners: list[str] = Field(default_factory=list)


class ApiKey(BaseModel):
    """Stored under api_keys/{sha256 of the secret}; the secret itself is never stored."""

    key_id: str
    account_id: str
    roles: list[Role]
    name: str = ""
    prefix: str
    revoked: bool = False
    created_at: datetime
    revoked_at: datetime | None = None
    created_by: str | None = None  # the actor who made it through the API (None: the admin command)
    # Coarse: written at most once an hour per key, so that using a key costs no write on the way (see auth).
    last_used_at: datetime | None = None


class Member(BaseModel):
    """A person's membership of an account (accounts/{account_id}/members/{id}, id = mem_<sha256(uid)>)."""

    id: str
    account_id: str
    uid: str
    email: str
    roles: list[Role]
    joined_at: datetime
    invited_by: str | None = Field(default=None, description="The actor who invited them (None: they founded it)")


class Invitation(BaseModel):
    """An invitation to join an account (accounts/{account_id}/invitations/{id}, id = inv_<sha256(email)>). The person
    whose verified email it is joins by accepting it."""

    id: str
    account_id: str
    email: str
    roles: list[Role]
    invited_by: str
    created_at: datetime


class Person(BaseModel):
    """people/{sha256(uid)}: the accounts a person belongs to, so that authenticating a person is one read. Written in
    the same commit as every change of one of their memberships."""

    uid: str
    email: str | None = None
    accounts: dict[str, list[Role]] = Field(default_factory=dict, description="account id → roles")
    updated_at: datetime


# ---- requests ----------------------------------------------------------------------------------------------------


Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
MaxRetries = Annotated[int, Field(ge=0, le=10)]


class CreateWorkflowRequest(RequestModel):
    title: Title
    description: Description = ""
    labels: Labels = Field(default_factory=dict)
    max_retries: MaxRetries = 3
    max_cost_usd: MaxCost | None = Field(
        default=None, description="A budget for the AI work, in USD; once the recorded cost reaches it, agents' "
                                  "transitions are refused (budget_exhausted) and claims skip the workflow")


class UpdateWorkflowRequest(RequestModel):
    """PATCH: the fields to change (at least one); a field left out is kept. Only `max_cost_usd` may be null (no
    budget)."""

    title: Title | None = None
    description: Description | None = None
    labels: Labels | None = Field(default=None, description="The whole new set of labels (replaces the old one)")
    max_retries: MaxRetries | None = Field(default=None, description="Not below the workflow's retry_count")
    max_cost_usd: MaxCost | None = Field(default=None, description="The new budget in USD; null removes it")

    @model_validator(mode="after")
    def _some_and_only_the_budget_null(self) -> UpdateWorkflowRequest:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, description, labels, max_retries, max_cost_usd")
        if nulls := sorted(f for f in self.model_fields_set if f != "max_cost_usd" and getattr(self, f) is None):
            raise ValueError(f"{', '.join(nulls)} may not be null (leave a field out to keep it)")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class TransitionRequest(RequestModel):
    to: State
    expected_version: Annotated[int, Field(ge=1)] | None = None
    reason: Annotated[str, StringConstraints(max_length=2_000)] = ""
    note: Annotated[str, StringConstraints(max_length=20_000)] = ""
    artifacts: Annotated[list[ArtifactId], Field(max_length=20)] = Field(
        default_factory=list, description="AVAILABLE artifacts of this workflow; the next hand-off carries them.")
    agent_id: AgentId | None = Field(
        default=None, description="The agent that holds the claim (needed while the hand-off is claimed).")
    usage: Usage | None = Field(
        default=None, description="What the model calls of this step cost: one call or a list (recorded on the "
                                  "event and added to the workflow's and the account's totals)")


class RollbackRequest(RequestModel):
    to_version: Annotated[int, Field(ge=1)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]
    reset_retries: bool = False


GrantedRoles = Annotated[list[Role], Field(min_length=1, max_length=8, description=(
    "OWNER and/or agent roles (Q_ASSISTANT, ARCHITECT, DEVELOPER, TESTER, VERIFIER, DEVOPS), or VIEWER alone"))]
AccountId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


class CreateAccountRequest(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class InviteMemberRequest(RequestModel):
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]
    roles: GrantedRoles


class AcceptInvitationRequest(RequestModel):
    account_id: AccountId = Field(description="The account whose invitation to accept (the owner who invited you "
                                              "can tell you; GET /v1/me lists them)")


class UpdateMemberRequest(RequestModel):
    roles: GrantedRoles


class CreateKeyRequest(RequestModel):
    name: Annotated[str, StringConstraints(max_length=100)] = ""
    roles: GrantedRoles


class CheckoutSessionRequest(RequestModel):
    plan: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = Field(
        description="A plan that is for sale (see GET /v1/account for the current one)")


# ---- responses ---------------------------------------------------------------------------------------------------


class AllowedTransition(BaseModel):
    to: State
    kind: str
    counts_as_retry: bool


class WorkflowUsage(UsageTotals):
    """What the workflow's AI work cost so far (every accepted transition's and heartbeat's usage)."""

    by_role: dict[str, UsageTotals] = Field(default_factory=dict, description="The same totals per role")


class Budget(BaseModel):
    max_cost_usd: float | None = Field(description="null: no budget")
    spent_usd: float = Field(description="The recorded cost (priced calls only; unpriced ones are counted in "
                                         "usage.unpriced_calls)")
    exhausted: bool = Field(description="spent_usd has reached max_cost_usd: agents' transitions are refused and "
                                        "claims skip the workflow until the owner raises the budget")


class WorkflowView(BaseModel):
    """A workflow as the API shows it to one caller."""

    id: str
    title: str
    description: str
    labels: dict[str, str]
    state: State
    role: Role | None
    version: int
    retry_count: int
    max_retries: int
    created_at: datetime
    updated_at: datetime
    created_by: str
    final: bool
    current_handoff: CurrentHandoff | None = None
    allowed_transitions: list[AllowedTransition]
    usage: WorkflowUsage
    budget: Budget


class WorkflowPage(BaseModel):
    workflows: list[WorkflowView]
    next_page_token: str | None


class EventPage(BaseModel):
    events: list[Event]
    next_page_token: str | None


class ChangeResult(BaseModel):
    """What a transition or rollback returns: the workflow after it, and the one event it wrote."""

    workflow: WorkflowView
    event: Event


class UpdateResult(BaseModel):
    """What a PATCH returns: the workflow after it, and its event (null when nothing changed: nothing was written)."""

    workflow: WorkflowView
    event: Event | None


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable and is what clients branch on."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None
    allowed_transitions: list[str] | None = None
    allowed_methods: list[str] | None = None
    model_config = ConfigDict(extra="allow")


class CheckoutSession(BaseModel):
    """A Stripe Checkout Session: send the customer to `url`."""

    id: str
    url: str


class PortalSession(BaseModel):
    """A Stripe Billing Portal session: send the customer to `url`."""

    url: str


class Entitlement(BaseModel):
    """Whether the account may create workflows now, and why."""

    entitled: bool
    status: str = Field(description="The deciding Stripe subscription's status, `none` when there is none, or "
                                    "`granted` for an operator's grant")
    reason: str
    grace_until: datetime | None = Field(default=None, description="past_due only: entitled until then")
    subscription_id: str | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False


class PlanLimits(BaseModel):
    max_active_workflows: int
    retention_days: int
    max_artifact_bytes: int
    stale_after_days: int


class MonthUsage(UsageTotals):
    month: str = Field(description="YYYY-MM, UTC")


class AccountUsage(BaseModel):
    active_workflows: int
    this_month: MonthUsage = Field(description="What the account's AI work cost this month (UTC), every workflow's")


class AccountView(BaseModel):
    id: str
    name: str
    plan: str
    entitlement: Entitlement
    limits: PlanLimits | None = Field(description="The plan's limits; null if the plan is unknown to this service")
    usage: AccountUsage


class MemberView(BaseModel):
    id: str
    uid: str
    email: str
    roles: list[Role]
    joined_at: datetime
    invited_by: str | None


class InvitationView(BaseModel):
    id: str
    account_id: str
    account_name: str | None = Field(None, description="In /v1/me: the name of the account the invitation is to")
    email: str
    roles: list[Role]
    invited_by: str
    created_at: datetime


class MemberList(BaseModel):
    members: list[MemberView]
    invitations: list[InvitationView] = Field(description="Pending: not accepted yet")


class Membership(BaseModel):
    account_id: str
    account_name: str | None
    roles: list[Role]


class Me(BaseModel):
    """The signed-in person: who they are, their accounts (pick one per request with X-Qorch-Account) and the
    invitations waiting for their verified email."""

    uid: str
    email: str | None
    email_verified: bool
    accounts: list[Membership]
    invitations: list[InvitationView]


class ApiKeyView(BaseModel):
    """An API key as the API shows it: never its secret."""

    id: str
    name: str
    roles: list[Role]
    prefix: str = Field(description="The secret's first 12 characters, to recognise it")
    created_at: datetime
    created_by: str | None
    revoked: bool
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="When it last authenticated a call, to within an hour")


class ApiKeyCreated(ApiKeyView):
    api_key: str | None = Field(description="The secret, shown this once (null when an Idempotency-Key replays the "
                                            "creation: it is not kept anywhere)")


class KeyList(BaseModel):
    keys: list[ApiKeyView]


class WebhookReceipt(BaseModel):
    """What the webhook did with an event (Stripe only looks at the status)."""

    received: bool = True
    event_id: str | None = None
    outcome: str = Field(description="applied | duplicate | stale | unmatched | ignored")


# ---- query strings -----------------------------------------------------------------------------------------------


class QueryModel(BaseModel):
    """Query strings arrive as text, so numbers are parsed ("20" → 20); unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")


class PageQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    page_token: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None


class ListWorkflowsQuery(PageQuery):
    state: State | None = None
    role: Role | None = None
    label: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,63}:.{0,256}$")] | None = Field(
        default=None, description="key:value; only workflows carrying that label")


# ---- hand-offs, the agent work queue, artifacts ------------------------------------------------------------------

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
ContentType = Annotated[str, StringConstraints(
    max_length=255, pattern=rf"^{_TOKEN}/{_TOKEN}(; ?{_TOKEN}=({_TOKEN}|\"[^\"\\\r\n]*\"))*$")]
LeaseSeconds = Annotated[int, Field(ge=30, le=3600)]


class Handoff(BaseModel):
    """Work handed from one role to the next (accounts/{account_id}/handoffs/{id}), written in the same commit as
    the transition that hands it over, and claimed by one agent at a time under a lease."""

    id: str
    workflow_id: str
    seq: int = Field(description="The seq of the event that opened it.")
    from_role: Role | None
    to_role: Role
    from_state: State | None
    to_state: State
    note: str = ""
    artifacts: list[str] = Field(default_factory=list, description="Artifact ids handed to the next role.")
    status: HandoffStatus
    created_at: datetime
    claimed_by: str | None = Field(default=None, description="The holder: its key id, or user:<uid> for a person")
    agent_id: str | None = None
    claimed_at: datetime | None = None
    lease_seconds: int | None = None
    lease_expires_at: datetime | None = None
    attempts: int = Field(default=0, description="How many times it has been claimed.")
    closed_at: datetime | None = None
    closed_seq: int | None = Field(default=None, description="The seq of the event that completed or cancelled it.")
    usage: UsageTotals | None = Field(
        default=None, description="Usage its heartbeats reported that no event carries yet (the next event of the "
                                  "hand-off takes it)")
    release_note: str | None = Field(default=None, description="The note of the last release, if it had one")

    def current(self) -> CurrentHandoff:
        return CurrentHandoff(id=self.id, status=self.status, claimed_by=self.claimed_by, agent_id=self.agent_id,
                              lease_expires_at=self.lease_expires_at, usage=self.usage)


class Artifact(BaseModel):
    """A work product's metadata (accounts/{account_id}/workflows/{workflow_id}/artifacts/{id}); its bytes live in
    the object store."""

    id: str
    workflow_id: str
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    status: ArtifactStatus
    created_at: datetime
    created_by: str
    upload_expires_at: datetime
    completed_at: datetime | None = None


class ClaimRequest(RequestModel):
    roles: Annotated[list[Role], Field(min_length=1, max_length=8)] | None = Field(
        default=None, description="Default: the key's agent roles (CUSTOMER for an OWNER key).")
    agent_id: AgentId
    lease_seconds: LeaseSeconds = 300
    wait_seconds: Annotated[int, Field(ge=0, le=20)] = Field(
        default=0, description="Long poll: wait up to this long for work before answering 204.")


class HeartbeatRequest(RequestModel):
    agent_id: AgentId
    lease_seconds: LeaseSeconds | None = Field(default=None, description="Default: the claim's lease_seconds.")
    usage: Usage | None = Field(
        default=None, description="Model calls made since the last report: one call or a list (kept on the "
                                  "hand-off until its next event, and added to the totals now)")


class ReleaseRequest(RequestModel):
    agent_id: AgentId
    note: Annotated[str, StringConstraints(max_length=2_000)] | None = Field(
        default=None, description="Why the work is given back; kept on the hand-off for the next agent")


class CreateArtifactRequest(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="A file name; directories are dropped and it must be 255 characters or fewer after that.")
    content_type: ContentType = "application/octet-stream"
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")] = Field(description="hex")


class ClaimResult(BaseModel):
    handoff: Handoff
    workflow: WorkflowView


class HandoffPage(BaseModel):
    handoffs: list[Handoff]
    next_page_token: str | None


class PresignedRequest(BaseModel):
    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict, description="Send exactly these headers; they are signed.")
    expires_at: datetime


class ArtifactCreated(BaseModel):
    artifact: Artifact
    upload: PresignedRequest


class ArtifactDetail(BaseModel):
    artifact: Artifact
    download: PresignedRequest | None = Field(description="Only when the artifact is AVAILABLE.")


class ArtifactPage(BaseModel):
    artifacts: list[Artifact]
    next_page_token: str | None
