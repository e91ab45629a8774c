"""The typed errors of the services: what a caller (the REST API, the console, the CLI) is
told when a service refuses. Each caller maps them once to its own form (the API: 404, 400
naming the field, 409 with the code), so no caller decides again what the error means.

`code` is machine-readable, `message` is for a person, `details` holds plain values worth
showing (a grant's times ...), usable after the transaction has rolled back.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.details = details


class NotFound(ServiceError, LookupError):
    """There is no such thing (an id, a key) to read or change."""

    code = "not_found"


class Invalid(ServiceError, ValueError):
    """Input that breaks a rule; `field` names the first field at fault."""

    code = "invalid_field"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class Conflict(ServiceError):
    """A valid request that the current state refuses: the id is taken, the coupon is used up,
    the event is not parked ... `code` says which."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, code=code, **details)
