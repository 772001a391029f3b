"""`GET /v1/workflows/{id}/context`: everything an agent needs for the workflow's current step, in one answer.

Reads: one batched read (the workflow, which decides who may read on), then, at once, the reads it needs: the open
hand-off (one document read, when there is one), the newest events (one query) and the workflow's newest artifacts
(one query); a hand-off's artifact older than those costs one more batched read. So 4 store RPCs for a workflow with
an open hand-off, 3 without one (plus the caller's key, as for every request), in two round trips. Download URLs are
signed locally (no network); `objects` gives the object store only when there is something to sign. Who may read it:
an owner, or a key holding the workflow's current role; another role is 403, another account's workflow 404.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from shared.adapters.firestore import Store
from shared.adapters.objectstore import ObjectStore
from shared.domain import agent_tools as tools_domain
from shared.domain import artifact as artifact_domain
from shared.domain import context as domain
from shared.domain.agent_models import ARTIFACT_WINDOW, AgentTools, ToolFormat
from shared.domain.errors import Forbidden, NotFound, ValidationFailed
from shared.domain.models import Artifact, Event, Handoff, Workflow
from shared.runtime import clock
from shared.runtime.config import config
from shared.services.auth import Principal
from shared.services.pagination import decode_page_token, encode_page_token


def _scope(workflow_id: str) -> str:
    return f"context-events:{workflow_id}"


def _before(page_token: str | None, workflow_id: str) -> int | None:
    """The seq the history continues below (its events are older than it), from a page token."""
    if page_token is None:
        return None
    seq = decode_page_token(page_token, _scope(workflow_id)).get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 2:
        raise ValidationFailed([{"field": "query:page_token", "message": "malformed token"}])
    return seq


def _read_handoff(store: Store, account_id: str, workflow: Workflow) -> Handoff | None:
    if workflow.current_handoff is None:
        return None
    doc = store.get(store.handoff(account_id, workflow.current_handoff.id))
    return Handoff.model_validate(doc.data) if doc.exists else None


def get_context(store: Store, objects: Callable[[], ObjectStore], principal: Principal, workflow_id: str, *,
                events: int, page_token: str | None) -> dict:
    before = _before(page_token, workflow_id)  # a bad token is refused before anything is read
    account = principal.account_id
    wf_key = store.workflow(account, workflow_id)
    doc = store.get_many([wf_key])[wf_key]
    if not doc.exists:
        raise NotFound("No workflow with that id.")
    workflow = Workflow.model_validate(doc.data)
    # The owner and a VIEWER (who reads everything of the account) see any step's context; an agent its own role's.
    if not (principal.is_owner or principal.read_only) and (workflow.role is None
                                                            or workflow.role not in principal.roles):
        raise Forbidden(f"Only the owner, a viewer or a {workflow.role or 'n/a'} caller may read the context of a "
                        f"workflow in {workflow.state}.")
    playbook = config().playbooks.for_role(workflow.role) if workflow.role else None

    # The three reads after the workflow's do not depend on each other: run at once, they cost one round trip.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="context-read") as pool:
        handoff_read = pool.submit(_read_handoff, store, account, workflow)
        events_read = pool.submit(store.query, store.events(account, workflow_id), order=[("seq", "DESCENDING")],
                                  limit=events + 1, start_after={"seq": before} if before else None)
        artifacts_read = pool.submit(store.query, store.artifacts(account, workflow_id),
                                     order=[("created_at", "DESCENDING"), ("__name__", "DESCENDING")],
                                     limit=ARTIFACT_WINDOW)
        handoff, found, newest = handoff_read.result(), events_read.result(), artifacts_read.result()
    history = [Event.model_validate(d.data) for d in found[:events]]
    token = (encode_page_token(_scope(workflow_id), {"seq": history[-1].seq})
             if len(found) > events and history else None)
    artifacts = {d.id: Artifact.model_validate(d.data) for d in newest}
    if missing := [a for a in (handoff.artifacts if handoff else []) if a not in artifacts]:
        docs = store.get_many([store.artifact(account, workflow_id, a) for a in missing])
        artifacts |= {d.id: Artifact.model_validate(d.data) for d in docs.values() if d.exists}

    now = clock.now()
    ttl = int(artifact_domain.URL_TTL.total_seconds())

    def sign(artifact: Artifact) -> tuple[str, datetime]:
        url = objects().presign_get(artifact_domain.object_key(account, workflow_id, artifact.id),
                                    content_type=artifact.content_type,
                                    content_disposition=artifact_domain.content_disposition(artifact.name),
                                    expires_in=ttl)
        return url, now + timedelta(seconds=ttl)

    context = domain.build(workflow=workflow, roles=principal.roles, playbook=playbook, handoff=handoff,
                           artifacts=artifacts, events=history, next_page_token=token, sign=sign)
    return context.model_dump(mode="json")


def agent_tools(fmt: ToolFormat) -> dict:
    """`GET /v1/agent-tools`: every tool definition in the shape the named SDK sends."""
    return AgentTools(format=fmt, tools=tools_domain.definitions(fmt)).model_dump(mode="json")
