"""Artifacts, pure: ids, object keys, name sanitising, and the checks of an upload and of an attachment.

Object keys are built from ids the product made (never from the name a client sent) and always start with the
account and the workflow, so a URL presigned for one account's object cannot reach another's.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime, timedelta
from urllib.parse import quote

from shared.domain.errors import ChecksumMismatch, UploadIncomplete, ValidationFailed
from shared.domain.models import Artifact, ArtifactStatus, CreateArtifactRequest

MAX_NAME_CHARS = 255
URL_TTL = timedelta(minutes=15)


def new_artifact_id() -> str:
    return "art_" + secrets.token_hex(16)


def workflow_prefix(account_id: str, workflow_id: str) -> str:
    return f"accounts/{account_id}/workflows/{workflow_id}/"


def object_key(account_id: str, workflow_id: str, artifact_id: str) -> str:
    return f"{workflow_prefix(account_id, workflow_id)}artifacts/{artifact_id}"


def sanitize_name(raw: str) -> str:
    """A plain file name: NFC, the last path segment only (no directories, so no traversal), no control or
    format characters, no surrounding blanks; refused if nothing (or only dots) is left or it is too long."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C")).strip()
    if not name or set(name) == {"."}:
        raise ValidationFailed([{"field": "name", "message": "must name a file (not empty, '.' or '..')"}])
    if len(name) > MAX_NAME_CHARS:
        raise ValidationFailed([{"field": "name", "message": f"at most {MAX_NAME_CHARS} characters"}])
    return name


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback and the exact UTF-8 name."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def new(request: CreateArtifactRequest, *, workflow_id: str, actor: str, now: datetime) -> Artifact:
    return Artifact(
        id=new_artifact_id(), workflow_id=workflow_id, name=sanitize_name(request.name),
        content_type=request.content_type, size_bytes=request.size_bytes, sha256=request.sha256.lower(),
        status=ArtifactStatus.PENDING_UPLOAD, created_at=now, created_by=actor, upload_expires_at=now + URL_TTL,
    )


def check_upload(artifact: Artifact, *, stored_size: int | None, stored_sha256: str | None, now: datetime) -> None:
    """The stored object must exist and be exactly the declared bytes."""
    if stored_size is None:
        hint = ("its upload URL has expired: create a new artifact" if now >= artifact.upload_expires_at
                else "PUT the bytes to the upload URL first")
        raise UploadIncomplete(f"Nothing has been uploaded for artifact {artifact.id}: {hint}.",
                               upload_expires_at=artifact.upload_expires_at.isoformat())
    if stored_size != artifact.size_bytes:
        raise ChecksumMismatch(
            f"The stored object has {stored_size} bytes, but {artifact.size_bytes} were declared; upload again.",
            expected_size_bytes=artifact.size_bytes, stored_size_bytes=stored_size)
    if stored_sha256 != artifact.sha256:
        raise ChecksumMismatch("The stored bytes do not have the declared SHA-256; upload again.",
                               expected_sha256=artifact.sha256, stored_sha256=stored_sha256)


def require_attachable(ids: list[str], found: dict[str, Artifact | None]) -> None:
    """Every id must name an AVAILABLE artifact of this workflow (`found` holds what the workflow has)."""
    errors = []
    if len(set(ids)) != len(ids):
        errors.append({"field": "artifacts", "message": "lists an artifact more than once"})
    for i, artifact_id in enumerate(ids):
        artifact = found.get(artifact_id)
        if artifact is None:
            errors.append({"field": f"artifacts.{i}", "message": f"{artifact_id} is not an artifact of this workflow"})
        elif artifact.status is not ArtifactStatus.AVAILABLE:
            errors.append({"field": f"artifacts.{i}",
                           "message": f"{artifact_id} is {artifact.status}: complete its upload first"})
    if errors:
        raise ValidationFailed(errors)
