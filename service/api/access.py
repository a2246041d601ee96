"""Route access policies: every view declares one, and nothing runs without it.

One hook (``authorize``) enforces them before any view runs: the bearer token, the route's
scopes, the acting context, then the path ids. A valid token identifies its client even when
the request then fails (an unknown route, a wrong method), so the audit entry names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import JsonRequest
from authlib.oauth2.rfc6750 import InsufficientScopeError
from flask import current_app, g, request
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service.api.problems import DATABASE_UNAVAILABLE, Problem
from service.context import (
    RECORD_ID_PATTERN,
    Caller,
    practitioner_errors,
    purpose_errors,
    recordable_address,
)
from service.database import db
from service.oauth import BearerToken, identify, require_oauth
from service.unit_of_work import begin_without_transaction

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
    read_only: bool = False  # changes no record (recording.begin_work)


def policy_of(view: Callable[..., Any]) -> AccessPolicy | None:
    """Return the access policy a view declared, or None if it declared none."""
    return getattr(view, "access_policy", None)


def _declare(policy: AccessPolicy) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        view.access_policy = policy  # type: ignore[attr-defined]
        return view

    return decorate


def public(action: str | None = None) -> Callable[[View], View]:
    """Declare a route open to anyone (health, metadata, token endpoints, API description)."""
    return _declare(AccessPolicy(public=True, action=action))


def protected(
    *scopes: str, action: str, acting_context: bool = True, read_only: bool = False
) -> Callable[[View], View]:
    """Require a bearer token holding any one of ``scopes``; audit the request as ``action``.

    With ``acting_context`` (the default for data routes) the request must also name the
    acting practitioner and the purpose of use. A ``read_only`` route changes no record (it
    writes its audit entry and notifications it queues), so its reads need no transaction of
    their own (``recording.begin_work``).
    """
    if not scopes:
        raise ValueError("a protected route must name at least one scope")
    return _declare(
        AccessPolicy(
            public=False, scopes=scopes, acting_context=acting_context, action=action,
            read_only=read_only,
        )
    )  # fmt: skip


_ROUTE_POLICY = "alertshare.route_policy"


def route_policy() -> AccessPolicy | None:
    """Return the policy of the view this request is routed to; None if it reaches no view
    (404, 405) or its view declares none. (Asked by several hooks: found once per request.)"""
    environ = request.environ
    if _ROUTE_POLICY not in environ:
        view = current_app.view_functions.get(request.endpoint or "")
        environ[_ROUTE_POLICY] = policy_of(view) if view is not None else None
    policy: AccessPolicy | None = environ[_ROUTE_POLICY]
    return policy


def authorize() -> None:
    """Enforce the routed view's policy before it runs (deny by default)."""
    policy = route_policy()
    if policy is None or not policy.public:
        token = _bearer_token(required=policy is not None)
        if request.url_rule is None:
            return  # unrouted: routing answers 404 or 405 next, attributed to the token's client
        if policy is None:
            raise Problem(
                403, "no-access-policy", "Forbidden", "This route declares no access policy."
            )
        assert token is not None
        g.caller = authenticate(policy, token)
    _refuse_foreign_ids()


def _bearer_token(required: bool) -> BearerToken | None:
    """Return the request's live bearer token and identify its client; None if it has none."""
    if not required and not request.headers.get("Authorization", "").startswith("Bearer "):
        return None
    token = presented_token()
    if isinstance(token, OAuth2Error):
        if required:
            raise token
        return None
    identify(token.client)
    return token


_PRESENTED_TOKEN = "alertshare.presented_token"
_TOKEN_CHECK_FAILED = "alertshare.token_check_failed"


def presented_token() -> BearerToken | OAuth2Error:
    """Return the request's live bearer token (any scope), or the error refusing it.

    Looked up once per request: the rate limiter needs the client before this hook runs. Kept
    in the request's environ, which no other request shares (an app context may span several).
    If the database cannot answer, the request is refused with a 503 (fail closed), and asked
    again (by the access hook after the rate limiter) it gets the same answer.
    """
    environ = request.environ
    if _PRESENTED_TOKEN not in environ:
        failed: Exception | None = environ.get(_TOKEN_CHECK_FAILED)
        if failed is not None:
            raise failed
        try:
            environ[_PRESENTED_TOKEN] = _acquire_token()
        except OAuth2Error as error:
            environ[_PRESENTED_TOKEN] = error
        except DATABASE_UNAVAILABLE as error:
            environ[_TOKEN_CHECK_FAILED] = error
            raise  # the database-unavailable problem, from its one handler (problems.py)
        except SQLAlchemyError as error:
            problem = Problem(
                503, "unavailable", "Service unavailable",
                "The access token could not be checked. Try again shortly.",
            )  # fmt: skip
            environ[_TOKEN_CHECK_FAILED] = problem
            raise problem from error
    found: BearerToken | OAuth2Error = environ[_PRESENTED_TOKEN]
    return found


def _acquire_token() -> BearerToken:
    """Check the bearer token: the request's first statement. If the server dropped the pooled
    connection it ran on (a restart since the connection's last use, too recent for the idle
    ping in service.database), the token is checked once more on a fresh connection: no other
    statement of the request has run yet, so nothing is repeated."""
    _begin_reads()
    try:
        return _validated_bearer()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    db.session.rollback()  # the pool has replaced its connections; start again on a new one
    _begin_reads()
    return _validated_bearer()


def _validated_bearer() -> BearerToken:
    # Authlib's resource protector checks the token, asked with a plain JsonRequest of the
    # method, path and headers: its Flask integration's request would also build the full URL
    # and a JSON payload, which a bearer check never reads (a tenth of the check's CPU, on every
    # API request), and send a token_authenticated signal nothing here listens for.
    oauth_request = JsonRequest(request.method, request.path, request.headers)
    token: BearerToken = require_oauth.validate_request(None, oauth_request)
    return token


def _begin_reads() -> None:
    # A read-only route's reads run outside a transaction on PostgreSQL (recording.begin_work),
    # from this, its first statement.
    if g.get("read_only"):
        g.autocommit = begin_without_transaction()


def authenticate(policy: AccessPolicy, token: BearerToken) -> Caller:
    """Check the token's scopes and the acting context against ``policy``; return the caller."""
    if not set(policy.scopes) & set(token.scope.split()):
        error = InsufficientScopeError()
        # RFC 6750 section 3: the challenge's scope attribute is a space-delimited list.
        error.required_scope = " ".join(policy.scopes)
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
    caller: Caller = g.caller
    return caller


def _refuse_foreign_ids() -> None:
    """Answer 404 for a path id that cannot be one of ours (before it reaches a query)."""
    for name, value in (request.view_args or {}).items():
        if name.endswith("_id") and not RECORD_ID_PATTERN.fullmatch(str(value)):
            raise Problem(404, "not-found", "Not found", f"No such {name.removesuffix('_id')}.")
