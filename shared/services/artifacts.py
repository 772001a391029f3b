"""Artifacts: the work products agents hand each other. Metadata in Firestore under the workflow, bytes in the
object store; clients upload and download directly with presigned URLs (15 minutes), so no byte passes through a
function except when `complete` has to hash what was stored.

Only the functions that presign or inspect objects (create, complete, get) use the object store (`object_store()`,
whose adapter imports boto3 lazily); listing artifacts and attaching them to transitions need Firestore only.
"""

from __future__ import annotations

from datetime import datetime

from shared.adapters.firestore import Doc, Key, Store, Writes
from shared.adapters.objectstore import ObjectStore, get_object_store
from shared.domain import artifact as domain
from shared.domain import plans
from shared.domain import state_machine as sm
from shared.domain.errors import Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from shared.domain.models import (
    Artifact,
    ArtifactCreated,
    ArtifactDetail,
    ArtifactPage,
    ArtifactStatus,
    CreateArtifactRequest,
    PresignedRequest,
    Workflow,
)
from shared.runtime import clock
from shared.runtime.config import config
from shared.services import commits
from shared.services.auth import Principal
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.pagination import decode_page_token, encode_page_token

DEFAULT_MAX_ARTIFACT_BYTES = 100 * 1024 * 1024


def object_store() -> ObjectStore:
    """This instance's object store (configured and created on first use)."""
    return get_object_store()


def max_artifact_bytes(plan: str | None) -> int:
    """The largest artifact the account's plan allows (the plans file); 100 MiB for a plan it does not know."""
    found = config().plans.find(plan or plans.DEV)
    return found.max_artifact_bytes if found else DEFAULT_MAX_ARTIFACT_BYTES


def _load(doc: Doc | None) -> Artifact:
    if doc is None or not doc.exists:
        raise NotFound("No artifact with that id in this workflow.")
    return Artifact.model_validate(doc.data)


def _ttl_seconds() -> int:
    return int(domain.URL_TTL.total_seconds())


def _detail(objects: ObjectStore, account_id: str, artifact: Artifact, now: datetime) -> dict:
    download = None
    if artifact.status is ArtifactStatus.AVAILABLE:
        url = objects.presign_get(domain.object_key(account_id, artifact.workflow_id, artifact.id),
                                  content_type=artifact.content_type,
                                  content_disposition=domain.content_disposition(artifact.name),
                                  expires_in=_ttl_seconds())
        download = PresignedRequest(method="GET", url=url, expires_at=now + domain.URL_TTL)
    return ArtifactDetail(artifact=artifact, download=download).model_dump(mode="json")


def create_artifact(store: Store, objects: ObjectStore, principal: Principal, workflow_id: str,
                    request: CreateArtifactRequest, idem: IdempotencyRequest | None) -> Outcome:
    """Record an artifact (PENDING_UPLOAD) and presign the PUT of its bytes. Only the owner or a key holding the
    role of the workflow's current state may add work products to it."""
    wf_key = store.workflow(principal.account_id, workflow_id)
    account_key = store.account(principal.account_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        wf_doc = docs[wf_key]
        if not wf_doc.exists:
            raise NotFound("No workflow with that id.")
        workflow = Workflow.model_validate(wf_doc.data)
        role = sm.role_of(workflow.state)
        if not principal.is_owner and (role is None or role not in principal.roles):
            raise Forbidden(f"Only the owner or a {role or 'n/a'} key may add artifacts to a workflow in "
                            f"{workflow.state}.")
        limit = max_artifact_bytes(docs[account_key].get("plan"))
        if request.size_bytes > limit:
            raise PayloadTooLarge(f"Artifacts are limited to {limit} bytes on this account's plan.",
                                  max_artifact_bytes=limit)
        artifact = domain.new(request, workflow_id=workflow_id, actor=principal.actor, now=at)
        url, headers = objects.presign_put(domain.object_key(principal.account_id, workflow_id, artifact.id),
                                           content_type=artifact.content_type, size_bytes=artifact.size_bytes,
                                           sha256_hex=artifact.sha256, expires_in=_ttl_seconds())
        upload = PresignedRequest(method="PUT", url=url, headers=headers, expires_at=artifact.upload_expires_at)
        writes = Writes()
        writes.create(store.artifact(principal.account_id, workflow_id, artifact.id),
                      artifact.model_dump(mode="python"))
        return ArtifactCreated(artifact=artifact, upload=upload).model_dump(mode="json"), writes

    return commits.change(store, principal.account_id, idem, [wf_key, account_key], decide,
                          busy="Too many concurrent requests with this Idempotency-Key; retry.")


def complete_artifact(store: Store, objects: ObjectStore, principal: Principal, workflow_id: str,
                      artifact_id: str, idem: IdempotencyRequest | None) -> Outcome:
    """Check the stored object (exists, size, SHA-256 of the bytes) and make the artifact AVAILABLE. Completing
    an AVAILABLE artifact again changes nothing and answers the same (an Idempotency-Key replays the first answer,
    whose download URL may have expired: get the artifact for a fresh one)."""
    key = store.artifact(principal.account_id, workflow_id, artifact_id)

    def decide(docs: dict[Key, Doc], at: datetime) -> tuple[dict, Writes]:
        artifact = _load(docs[key])
        writes = Writes()
        if artifact.status is not ArtifactStatus.AVAILABLE:
            stored = objects.stat(domain.object_key(principal.account_id, workflow_id, artifact_id),
                                  expected_size=artifact.size_bytes)
            domain.check_upload(artifact, stored_size=stored.size if stored else None,
                                stored_sha256=stored.sha256 if stored else None, now=at)
            artifact = artifact.model_copy(update={"status": ArtifactStatus.AVAILABLE, "completed_at": at})
            writes.update(key, {"status": artifact.status, "completed_at": at}, if_updated_at=docs[key].update_time)
        return _detail(objects, principal.account_id, artifact, at), writes

    # A lost race is a concurrent complete: the re-read finds the artifact AVAILABLE and answers with it.
    return commits.change(store, principal.account_id, idem, [key], decide,
                          busy="The artifact is changing too fast; retry.")


def get_artifact(store: Store, objects: ObjectStore, principal: Principal, workflow_id: str,
                 artifact_id: str) -> dict:
    artifact = _load(store.get(store.artifact(principal.account_id, workflow_id, artifact_id)))
    return _detail(objects, principal.account_id, artifact, clock.now())


def list_artifacts(store: Store, principal: Principal, workflow_id: str, *, limit: int,
                   page_token: str | None) -> dict:
    """The workflow's artifacts, newest first (metadata only: get one for its download URL)."""
    scope = f"artifacts:{workflow_id}"
    start_after = None
    if page_token:
        cursor = decode_page_token(page_token, scope)
        try:
            start_after = {"created_at": datetime.fromisoformat(cursor["c"]),
                           "__name__": store.artifact(principal.account_id, workflow_id, str(cursor["id"]))}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed([{"field": "query:page_token", "message": "malformed token"}]) from exc
    docs = store.query(store.artifacts(principal.account_id, workflow_id),
                       order=[("created_at", "DESCENDING"), ("__name__", "DESCENDING")], limit=limit + 1,
                       start_after=start_after)
    if not docs and not page_token and not store.get(store.workflow(principal.account_id, workflow_id)).exists:
        raise NotFound("No workflow with that id.")
    artifacts = [Artifact.model_validate(d.data) for d in docs[:limit]]
    token = None
    if len(docs) > limit:
        last = artifacts[-1]
        token = encode_page_token(scope, {"c": last.created_at.isoformat(), "id": last.id})
    return ArtifactPage(artifacts=artifacts, next_page_token=token).model_dump(mode="json")


# ---- for the scheduled cleanup -----------------------------------------------------------------------------------


def delete_workflow_artifacts(store: Store, objects: ObjectStore, account_id: str, workflow_id: str) -> int:
    """Delete a workflow's artifacts, bytes first (so no metadata ever points at nothing it claims to have), then
    their documents; returns how many documents."""
    objects.delete_prefix(domain.workflow_prefix(account_id, workflow_id))
    return commits.delete_all(store, store.artifacts(account_id, workflow_id))


def delete_abandoned_upload(store: Store, objects: ObjectStore, seen: Doc) -> bool:
    """Delete an artifact still PENDING_UPLOAD long after its upload URL expired: the record first, and only if it
    is unchanged since `seen` (a concurrent complete wins), then whatever bytes reached the store. In that order a
    record never says AVAILABLE about bytes that are gone. True if this call deleted it."""
    account_id, artifact = seen.account_id, Artifact.model_validate(seen.data)
    writes = Writes()
    writes.delete(seen.key, if_updated_at=seen.update_time)
    if account_id is None or not commits.write_once(store, writes):
        return False
    objects.delete_prefix(domain.object_key(account_id, artifact.workflow_id, artifact.id))
    return True
