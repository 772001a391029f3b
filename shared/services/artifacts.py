"""Artifacts: the work products agents hand each other. Metadata in Firestore under the workflow, bytes in the
object store; clients upload and download directly with presigned URLs (15 minutes), so no byte passes through a
function except when `complete` has to hash what was stored.

Only the functions that presign or inspect objects (create, complete, get) touch `shared.adapters.objectstore`, which
imports boto3 lazily; listing artifacts and attaching them to transitions need Firestore only.
"""

from __future__ import annotations

from datetime import datetime

from shared.adapters.firestore import Snapshot, Store, WriteConflict, Writes
from shared.adapters.objectstore import ObjectStore
from shared.domain import artifact as domain
from shared.domain import plans
from shared.domain import state_machine as sm
from shared.domain.errors import Forbidden, NotFound, PayloadTooLarge, ValidationFailed, VersionConflict
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
from shared.services.auth import Principal
from shared.services.commits import commit_change
from shared.services.idempotency import IdempotencyRequest, Outcome
from shared.services.pagination import decode_page_token, encode_page_token
from shared.services.workflows import MAX_ATTEMPTS

DEFAULT_MAX_ARTIFACT_BYTES = 100 * 1024 * 1024


def max_artifact_bytes(plan: str | None) -> int:
    """The largest artifact the account's plan allows (the plans file); 100 MiB for a plan it does not know."""
    found = plans.catalog().find(plan or plans.DEV)
    return found.max_artifact_bytes if found else DEFAULT_MAX_ARTIFACT_BYTES


def _load(snap: Snapshot | None) -> Artifact:
    if snap is None or not snap.exists:
        raise NotFound("No artifact with that id in this workflow.")
    return Artifact.model_validate(snap.to_dict())


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
    wf_ref = store.workflow(principal.account_id, workflow_id)
    account_ref = store.account(principal.account_id)

    def decide(snaps: dict[str, Snapshot], at: datetime) -> tuple[dict, Writes]:
        wf_snap = snaps[wf_ref.path]
        if not wf_snap.exists:
            raise NotFound("No workflow with that id.")
        workflow = Workflow.model_validate(wf_snap.to_dict())
        role = sm.role_of(workflow.state)
        if not principal.is_owner and (role is None or role not in principal.roles):
            raise Forbidden(f"Only the owner or a {role or 'n/a'} key may add artifacts to a workflow in "
                            f"{workflow.state}.")
        plan = snaps[account_ref.path].get("plan") if snaps[account_ref.path].exists else None
        limit = max_artifact_bytes(plan)
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

    return commit_change(store, principal.account_id, idem, [wf_ref, account_ref], decide, attempts=MAX_ATTEMPTS,
                         exhausted="Too many concurrent requests with this Idempotency-Key; retry.")


def complete_artifact(store: Store, objects: ObjectStore, principal: Principal, workflow_id: str,
                      artifact_id: str) -> dict:
    """Check the stored object (exists, size, SHA-256 of the bytes) and make the artifact AVAILABLE. Completing
    an AVAILABLE artifact again changes nothing and answers the same."""
    ref = store.artifact(principal.account_id, workflow_id, artifact_id)
    for _ in range(MAX_ATTEMPTS):
        snap = store.get(ref)
        artifact = _load(snap)
        at = clock.now()
        if artifact.status is ArtifactStatus.AVAILABLE:
            return _detail(objects, principal.account_id, artifact, at)
        stored = objects.stat(domain.object_key(principal.account_id, workflow_id, artifact_id),
                              expected_size=artifact.size_bytes)
        domain.check_upload(artifact, stored_size=stored.size if stored else None,
                            stored_sha256=stored.sha256 if stored else None, now=at)
        available = artifact.model_copy(update={"status": ArtifactStatus.AVAILABLE, "completed_at": at})
        writes = Writes()
        writes.update(ref, {"status": available.status, "completed_at": at}, if_updated_at=snap.update_time)
        try:
            store.commit(writes)
            return _detail(objects, principal.account_id, available, at)
        except WriteConflict:
            continue  # completed concurrently: the re-read answers with it
    raise VersionConflict("The artifact is changing too fast; retry.")


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
    snaps = store.query(store.artifacts(principal.account_id, workflow_id),
                        order=[("created_at", "DESCENDING"), ("__name__", "DESCENDING")], limit=limit + 1,
                        start_after=start_after)
    if not snaps and not page_token and not store.get(store.workflow(principal.account_id, workflow_id)).exists:
        raise NotFound("No workflow with that id.")
    artifacts = [Artifact.model_validate(s.to_dict()) for s in snaps[:limit]]
    token = None
    if len(snaps) > limit:
        last = artifacts[-1]
        token = encode_page_token(scope, {"c": last.created_at.isoformat(), "id": last.id})
    return ArtifactPage(artifacts=artifacts, next_page_token=token).model_dump(mode="json")


# ---- for the scheduled cleanup -----------------------------------------------------------------------------------


def delete_workflow_artifacts(store: Store, objects: ObjectStore, account_id: str, workflow_id: str) -> int:
    """Delete a workflow's artifacts, bytes first (so no metadata ever points at nothing it claims to have), then
    their documents; returns how many documents."""
    objects.delete_prefix(domain.workflow_prefix(account_id, workflow_id))
    return store.delete_matching(store.artifacts(account_id, workflow_id))


def delete_abandoned_upload(store: Store, objects: ObjectStore, seen: Snapshot) -> bool:
    """Delete an artifact still PENDING_UPLOAD long after its upload URL expired: the record first, and only if it
    is unchanged since `seen` (a concurrent complete wins), then whatever bytes reached the store. In that order a
    record never says AVAILABLE about bytes that are gone. True if this call deleted it."""
    writes = Writes()
    writes.delete(seen.reference, if_updated_at=seen.update_time)
    try:
        store.commit(writes)
    except WriteConflict:
        return False
    workflow_ref = seen.reference.parent.parent  # accounts/{a}/workflows/{wf}/artifacts/{id}
    objects.delete_prefix(domain.object_key(workflow_ref.parent.parent.id, workflow_ref.id, seen.id))
    return True
