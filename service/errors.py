"""Domain errors: raised by use cases, mapped to problem responses in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class DomainError(Exception):
    """A request the domain refuses; ``status`` and ``slug`` say how to answer it."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = dict(errors or {})


class InvalidInput(DomainError):
    status = 400
    slug = "validation-error"
    title = "Your request is not valid"


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Forbidden(DomainError):
    """The caller may know the object exists but may not do this to it."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class PreconditionRequired(DomainError):
    status = 428
    slug = "precondition-required"
    title = "Precondition required"


class PreconditionFailed(DomainError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"
