"""The one error hierarchy. Every refusal the product makes is a `ProblemError`; `shared.http.endpoint` renders it as
RFC 9457 `application/problem+json` with a stable `code`. Pure: no I/O."""

from __future__ import annotations

from typing import Any, ClassVar


class ProblemError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers = headers or {}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:qorch:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class MalformedJson(ProblemError):
    status, code, title = 400, "malformed_json", "The request body is not valid JSON"


class Unauthenticated(ProblemError):
    status, code, title = 401, "unauthenticated", "A valid API key or Firebase ID token is required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="qorch"'}, **extra)


class PaymentRequired(ProblemError):
    status, code, title = 402, "payment_required", "The account has no active subscription"


class Forbidden(ProblemError):
    status, code, title = 403, "forbidden", "This key may not do that"


class QuotaExceeded(ProblemError):
    status, code, title = 403, "quota_exceeded", "The account's plan allows no more of this"


class NotFound(ProblemError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(ProblemError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(
            f"Use {', '.join(allowed)}.", headers={"Allow": ", ".join(allowed)}, allowed_methods=allowed
        )


class PayloadTooLarge(ProblemError):
    status, code, title = 413, "payload_too_large", "The request body is too large"


class ValidationFailed(ProblemError):
    """422 with `errors`: one entry per bad field, `{"field": "a.b", "message": "..."}`."""

    status, code, title = 422, "validation_error", "The request is not valid"

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


class InvalidTransition(ProblemError):
    status, code, title = 409, "invalid_transition", "That transition is not allowed from the current state"


class RetryLimitExceeded(ProblemError):
    status, code, title = 409, "retry_limit_exceeded", "The workflow has used all its retries"


class VersionConflict(ProblemError):
    status, code, title = 409, "version_conflict", "The workflow changed since you read it"


class InvalidSignature(ProblemError):
    status, code, title = 400, "invalid_signature", "The Stripe-Signature header does not verify"


class NoBillingAccount(ProblemError):
    status, code, title = 409, "no_billing_account", "The account has never paid through Stripe"


class AlreadySubscribed(ProblemError):
    status, code, title = 409, "already_subscribed", "The account already has a subscription"


class BillingProviderError(ProblemError):
    status, code, title = 502, "billing_provider_error", "Stripe refused the request"


class BillingNotConfigured(ProblemError):
    status, code, title = 503, "billing_not_configured", "Billing is not configured on this deployment"


class BudgetExhausted(ProblemError):
    status, code, title = 409, "budget_exhausted", "The workflow's budget is spent"


class LeaseHeld(ProblemError):
    status, code, title = 409, "lease_held", "Another agent holds this workflow's hand-off under a live lease"


class LeaseLost(ProblemError):
    status, code, title = 409, "lease_lost", "You no longer hold this hand-off"


class UploadIncomplete(ProblemError):
    status, code, title = 409, "upload_incomplete", "The artifact's bytes have not been uploaded"


class ChecksumMismatch(ProblemError):
    status, code, title = 422, "checksum_mismatch", "The uploaded bytes are not the ones declared"


class EmailNotVerified(ProblemError):
    status, code, title = 403, "email_not_verified", "Your email address is not verified"


class AlreadyMember(ProblemError):
    status, code, title = 409, "already_member", "You are already a member"


class LastOwner(ProblemError):
    status, code, title = 409, "last_owner", "The account's last owner cannot be removed or demoted"


class IdempotencyKeyReused(ProblemError):
    status, code, title = 422, "idempotency_key_reused", "This Idempotency-Key was used with a different request"


class Unavailable(ProblemError):
    status, code, title = 503, "unavailable", "The store cannot be reached; try again"

    def __init__(self, detail: str | None = None, retry_after: int = 2) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Internal(ProblemError):
    """Only for the last-resort handler: a bug, logged with its traceback, never leaking details."""
