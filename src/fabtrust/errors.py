"""One exception root for fabtrust; every other error derives from it.

Each error carries a *safe* message: it may be shown to a CLI user or an API client, so it names the
problem without echoing secrets, key material or internal detail. Faces translate the families:
the CLI exits with ``exit_code`` and prints the message on one line; the API answers ``http_status``
with the message and a request id. Foreign exceptions are translated at the boundary with
``raise SomeError("...") from exc`` so the cause reaches the server log, never the client.
"""

from __future__ import annotations


class FabtrustError(Exception):
    """Root of every fabtrust error."""

    http_status = 500
    exit_code = 2
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(FabtrustError):
    """Malformed, truncated, oversized or out-of-range input."""

    http_status = 400
    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """A request body or upload over its limit, refused before it is parsed."""

    http_status = 413
    code = "too_large"


class VerificationFailed(FabtrustError):
    """A signature, proof, checksum or authenticated ciphertext did not verify."""

    http_status = 422
    code = "verification_failed"


class PolicyViolation(FabtrustError):
    """The request is well formed but a rule forbids it (quota, window, constraint)."""

    http_status = 422
    code = "policy_violation"


class NotFound(FabtrustError):
    """The named object does not exist."""

    http_status = 404
    code = "not_found"


class Conflict(FabtrustError):
    """The object exists already, or the state changed underneath the request."""

    http_status = 409
    code = "conflict"


class NotAuthorised(FabtrustError):
    """Missing or wrong credentials (passphrase, PIN, token) or insufficient rights."""

    http_status = 403
    code = "not_authorised"


class Unauthenticated(NotAuthorised):
    """No credentials, or credentials that identify nobody (unknown, expired or revoked token)."""

    http_status = 401
    code = "unauthenticated"


class RateLimited(FabtrustError):
    """Too many requests from one client; ``retry_after`` seconds until the next is accepted."""

    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(FabtrustError):
    """A backend the operation needs is missing or unusable (token absent, database too new)."""

    http_status = 503
    code = "unavailable"
