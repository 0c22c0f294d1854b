"""Domain errors: services raise these, one HTTP handler turns them into API.md's error shape.

Plain exceptions with no Flask import, so services stay callable from tasks, the CLI and tests.
"""

from __future__ import annotations

from typing import Any, ClassVar


class APIError(Exception):
    """An error a client should see, with its HTTP status, a stable code and optional details."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


class BadRequest(APIError):
    status = 400
    code = "bad_request"


class Unauthorized(APIError):
    status = 401
    code = "unauthorized"


class Forbidden(APIError):
    status = 403
    code = "forbidden"


class NotFound(APIError):
    status = 404
    code = "not_found"


class Conflict(APIError):
    status = 409
    code = "conflict"


class PayloadTooLarge(APIError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(APIError):
    status = 415
    code = "unsupported_media_type"


class Invalid(APIError):
    """Well-formed but invalid input; `details` maps field names to lists of messages."""

    status = 422
    code = "validation_error"


class TooManyRequests(APIError):
    status = 429
    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: int, details: dict[str, Any] | None = None
    ) -> None:
        seconds = max(1, int(retry_after))
        super().__init__(
            message,
            details={**(details or {}), "retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = seconds


class ServiceUnavailable(APIError):
    status = 503
    code = "service_unavailable"


class BadGateway(APIError):
    """An upstream service (the AI provider) refused or broke a request it should have served."""

    status = 502
    code = "bad_gateway"
