from shared.http.endpoint import ApiRequest, Reply, endpoint, read_body
from shared.services import billing


@endpoint("stripe_webhook")
def stripe_webhook(req: ApiRequest) -> Reply:
    """Stripe's events: verified on the raw bytes, applied once and in order (no API key: the signature is the
    authentication)."""
    return Reply(billing.receive_stripe_event(req.store, read_body(req.raw), req.raw.headers.get("Stripe-Signature"),
                                              req.log))
