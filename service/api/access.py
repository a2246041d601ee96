"""Route access policies: every view declares one, and nothing runs without it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from authlib.oauth2.rfc6750 import InsufficientScopeError
from flask import current_app, g, request

from service.audit.request import current_entry
from service.context import (
    RECORD_ID_PATTERN,
    Caller,
    practitioner_errors,
    purpose_errors,
    recordable_address,
)
from service.oauth import require_oauth
from service.problems import Problem

PRACTITIONER_HEADER = "X-Acting-Practitioner"
PURPOSE_HEADER = "X-Purpose-Of-Use"

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class AccessPolicy:
    """What a route demands: no token (public), or a bearer token with any of ``scopes``."""

    public: bool
    scopes: tuple[str, ...] = ()
    acting_context: bool = False
    action: str | None = None  # the audit tag, "subject:action"; None only for unaudited routes


def policy_of(view: Callable[..., Any]) -> AccessPolicy | None:
    """Return the access policy a view declared, or None if it declared none."""
    return getattr(view, "access_policy", None)


def public(action: str | None = None) -> Callable[[View], View]:
    """Declare a route open to anyone (health, metadata, token endpoints, API description)."""

    def decorate(view: View) -> View:
        view.access_policy = AccessPolicy(public=True, action=action)  # type: ignore[attr-defined]
        return view

    return decorate


def protected(*scopes: str, action: str, acting_context: bool = True) -> Callable[[View], View]:
    """Require a bearer token holding any one of ``scopes``; audit the request as ``action``.

    With ``acting_context`` (the default for data routes) the request must also name the
    acting practitioner and the purpose of use.
    """
    if not scopes:
        raise ValueError("a protected route must name at least one scope")
    policy = AccessPolicy(public=False, scopes=scopes, acting_context=acting_context, action=action)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.caller = authenticate(policy)
            return view(*args, **kwargs)

        wrapper.access_policy = policy  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def authenticate(policy: AccessPolicy) -> Caller:
    """Check the bearer token and acting context against ``policy``; return the caller."""
    token = require_oauth.acquire_token()  # any live token; scopes are checked below
    # From here on a refusal is attributable: the audit entry names the agency and client.
    entry = current_entry()
    entry.agency_id, entry.client_id = token.agency_id, token.client.client_id
    if not set(policy.scopes) & set(token.scope.split()):
        error = InsufficientScopeError()
        error.required_scope = " or ".join(policy.scopes)
        raise error
    practitioner = request.headers.get(PRACTITIONER_HEADER)
    purpose = request.headers.get(PURPOSE_HEADER)
    if policy.acting_context:
        errors = {
            name: messages
            for name, messages in (
                (PRACTITIONER_HEADER, practitioner_errors(practitioner)),
                (PURPOSE_HEADER, purpose_errors(purpose)),
            )
            if messages
        }
        if errors:
            raise Problem(
                400,
                "missing-acting-context",
                "Acting practitioner and purpose needed",
                f"Invalid or missing headers: {', '.join(errors)}",
                errors=errors,
            )
    return Caller(
        agency_id=token.agency_id,
        client_id=token.client.client_id,
        scopes=frozenset(token.scope.split()),
        practitioner=practitioner if policy.acting_context else None,
        purpose=purpose if policy.acting_context else None,
        request_id=g.request_id,
        source_address=recordable_address(request.remote_addr),
    )


def current_caller() -> Caller:
    """Return the caller authenticated for this request."""
    return g.caller  # type: ignore[no-any-return]


def refuse_foreign_ids() -> None:
    """Answer 404 for a path id that cannot be one of ours (before it reaches a query)."""
    for name, value in (request.view_args or {}).items():
        if name.endswith("_id") and not RECORD_ID_PATTERN.fullmatch(str(value)):
            raise Problem(404, "not-found", "Not found", f"No such {name.removesuffix('_id')}.")


def enforce_declared_policy() -> None:
    """Refuse any request routed to a view that declared no access policy (deny by default)."""
    if request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    if view is None or policy_of(view) is None:
        raise Problem(403, "no-access-policy", "Forbidden", "This route declares no access policy.")
