"""The OpenAPI 3.1 document, generated from the routes' declarations and their schemas."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema, validate

from schemas.problem import ProblemSchema
from service.context import PRACTITIONER_REF_PATTERN, PURPOSES_OF_USE, RECORD_ID_PATTERN
from service.oauth import scopes

View = TypeVar("View", bound=Callable[..., Any])

# One line for each scope a client may be granted (the token endpoint's `scope` parameter).
SCOPE_DESCRIPTIONS = {
    scopes.WARNINGS_WRITE: "Publish, change, withdraw, close and review your agency's warnings; "
    "record incidents at households your agency works with.",
    scopes.INVOLVEMENTS_WRITE: "Declare and end your agency's involvement with a household "
    "(which unlocks its detail); add and correct its members.",
    scopes.HOUSEHOLDS_READ: "Look households up (the flag view); read the household, members, "
    "incidents, warnings and pre-visit briefing of those your agency works with.",
    scopes.NOTIFICATIONS_MANAGE: "Manage where your agency is told of new and changed warnings.",
    scopes.VISITS_WRITE: "Record visits your agency's practitioners make to households.",
    scopes.AUDIT_READ: "Read the audit entries your agency made, and those about households it "
    "works with or warnings it issued.",
    scopes.AUDIT_READ_ALL: "Read the whole audit log and verify its hash chain (the "
    "partnership's audit lead).",
    scopes.TOKENS_INTROSPECT: "Check other clients' tokens at /oauth/introspect (resource "
    "servers, such as a gateway).",
}
ACTING_CONTEXT_PARAMETERS = [
    {
        "name": "X-Acting-Practitioner",
        "in": "header",
        "required": True,
        "description": "Your case system's opaque reference for the practitioner acting. "
        "Recorded in the audit log.",
        "schema": {"type": "string", "pattern": f"^{PRACTITIONER_REF_PATTERN.pattern}$"},
    },
    {
        "name": "X-Purpose-Of-Use",
        "in": "header",
        "required": True,
        "description": "Why the data is needed. Recorded in the audit log.",
        "schema": {"type": "string", "enum": list(PURPOSES_OF_USE)},
    },
]
# The ETag of a warning is its version; send it back as If-Match to change the warning.
VERSION_TAG = {"type": "string", "pattern": '^"[0-9]{1,18}"$'}
IF_MATCH_PARAMETER = {
    "name": "If-Match",
    "in": "header",
    "required": True,
    "description": "The ETag you read. Without it 428; if the object changed since, 412.",
    "schema": VERSION_TAG,
}
ETAG_HEADER = {
    "description": "The object's version; send it as If-Match to change the object.",
    "required": True,
    "schema": VERSION_TAG,
}
_ERROR_STATUSES = {
    400: "Invalid input (fields named in `errors`)",
    401: "Missing, expired or revoked token",
    403: "Token lacks the scope, or the object is not yours",
    404: "Not found",
    409: "The object's state does not allow this (already done, ended or not active)",
    412: "The object changed since you read it: read it again (If-Match is stale)",
    413: "Request body too large",
    415: "Request body must be JSON",
    428: "Send If-Match with the ETag you read",
    429: "Too many requests: over your client's rate limit (or, without a live token, your "
    "address's); retry after Retry-After seconds",
    503: "Service unavailable (for example the audit log cannot be written)",
}
# Every API request counts against a rate limit (service/api/rate_limits.py).
_EVERY_OPERATION = (400, 401, 403, 404, 429, 503)
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_ERROR_HEADERS = {429: {"Retry-After": RETRY_AFTER_HEADER}}
_WITH_A_BODY = (413, 415)
_WITH_IF_MATCH = (412, 428)


@dataclass(frozen=True)
class ApiDoc:
    """What a route documents beyond its access policy."""

    response: type[Schema] | None
    request: type[Schema] | None
    query: type[Schema] | None
    status: int
    errors: tuple[int, ...] = ()
    etag: bool = False
    if_match: bool = False
    media_types: tuple[str, ...] = ()
    headers: Mapping[str, Any] = field(default_factory=dict)


def documented(
    *,
    response: type[Schema] | None = None,
    request: type[Schema] | None = None,
    query: type[Schema] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    etag: bool = False,
    if_match: bool = False,
    media_types: tuple[str, ...] = (),
    headers: Mapping[str, Any] | None = None,
) -> Callable[[View], View]:
    """Attach the schemas of a route for the OpenAPI document.

    ``errors`` names statuses the route answers beyond the ones every route may (409); ``etag``
    says the success response carries the object's ETag; ``if_match`` that the route needs it
    back (428 without, 412 when stale); ``media_types`` the success body's types when it is not
    JSON; ``headers`` other response headers of success.
    """
    doc = ApiDoc(
        response, request, query, status, errors, etag, if_match, media_types, dict(headers or {})
    )

    def decorate(view: View) -> View:
        view.api_doc = doc  # type: ignore[attr-defined]
        return view

    return decorate


class _Converter(OpenAPIConverter):
    """Adds a schema's ``openapi_rules`` (rules between its fields, e.g. "exactly one of") and
    the schemes a URL field accepts."""

    def init_attribute_functions(self) -> None:
        super().init_attribute_functions()  # type: ignore[no-untyped-call]
        self.attribute_functions.append(self.url_schemes)

    def url_schemes(self, field: Any, **kwargs: Any) -> dict[str, Any]:
        """Declare the schemes a URL field's validator accepts, as a pattern."""
        schemes = next(
            (v.schemes for v in field.validators if isinstance(v, validate.URL) and v.schemes),
            None,
        )
        if not schemes or "pattern" in kwargs.get("ret", {}):
            return {}
        return {"pattern": f"^(?:{'|'.join(_any_case(s) for s in sorted(schemes))})://"}

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().schema2jsonschema(schema)  # type: ignore[no-untyped-call]
        rules = getattr(resolve_schema_cls(schema), "openapi_rules", None)
        if rules:
            jsonschema.update(copy.deepcopy(rules))
        return jsonschema


def _any_case(word: str) -> str:
    """A pattern matching ``word`` in any case (the validator compares schemes so; JSON Schema
    patterns take no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


def _success(doc: ApiDoc) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Created" if doc.status == 201 else "Success"}
    if doc.response is not None:
        ok["content"] = {"application/json": {"schema": doc.response}}
    elif doc.media_types:
        ok["content"] = {media: {"schema": {"type": "string"}} for media in doc.media_types}
    headers = dict(doc.headers)
    if doc.etag:
        headers["ETag"] = ETAG_HEADER
    if headers:
        ok["headers"] = headers
    return ok


def _error(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": "Problem"}},
    }
    if status in _ERROR_HEADERS:
        response["headers"] = copy.deepcopy(_ERROR_HEADERS[status])
    return response


def _operation(view: Callable[..., Any], error_statuses: Mapping[int, str]) -> dict[str, Any]:
    policy = getattr(view, "access_policy", None)
    doc: ApiDoc = getattr(view, "api_doc", ApiDoc(None, None, None, 200))
    summary, _, description = (inspect.getdoc(view) or "").partition("\n")
    operation: dict[str, Any] = {"summary": summary, "description": description.strip()}
    statuses = set(_EVERY_OPERATION) | set(doc.errors)
    if doc.request is not None:
        statuses.update(_WITH_A_BODY)
    if doc.if_match:
        statuses.update(_WITH_IF_MATCH)
    operation["responses"] = {
        str(doc.status): _success(doc),
        **{str(status): _error(status, error_statuses[status]) for status in sorted(statuses)},
    }
    parameters: list[dict[str, Any]] = []
    if policy is not None and not policy.public:
        # Any one of the route's scopes will do: in OpenAPI, alternatives are separate
        # requirements (the scopes of one requirement are all needed).
        operation["security"] = [{"oauth2": [scope]} for scope in policy.scopes]
        if len(policy.scopes) > 1:
            operation["description"] += (
                f"\n\nNeeds any one of the scopes: {', '.join(policy.scopes)}."
            )
        if policy.acting_context:
            parameters.extend(copy.deepcopy(ACTING_CONTEXT_PARAMETERS))
    else:
        operation["security"] = []
    if doc.if_match:
        parameters.append(copy.deepcopy(IF_MATCH_PARAMETER))
    if doc.query is not None:
        parameters.append({"in": "query", "schema": doc.query})
    if doc.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": doc.request}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_parameter(name: str) -> dict[str, Any]:
    """A path id: anything not shaped like one of ours is answered 404."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": "Not shaped like one of our ids: 404.",
        "schema": {"type": "string", "pattern": f"^{RECORD_ID_PATTERN.pattern}$"},
    }


def build_openapi(
    rules: list[tuple[str, set[str], Callable[..., Any]]],
    issuer: str,
    max_body_bytes: int | None = None,
) -> dict[str, Any]:
    """Return the OpenAPI document for ``rules``: (path, methods, view) of the JSON API, whose
    request bodies may be at most ``max_body_bytes`` long."""
    error_statuses = dict(_ERROR_STATUSES)
    if max_body_bytes is not None:
        error_statuses[413] = f"Request body too large: over {max_body_bytes} bytes"
    spec = APISpec(
        title="alertshare",
        version="1",
        openapi_version="3.1.0",
        plugins=[_Plugin()],
        info={
            "description": "Multi-agency hostility warnings about households. Unknown fields "
            "are refused at every depth, and no string may contain a NUL character or an "
            "unpaired surrogate."
        },
    )
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "description": "OAuth 2.0 client credentials; ask for any of your client's scopes.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": f"{issuer}/oauth/token",
                    "scopes": {scope: SCOPE_DESCRIPTIONS[scope] for scope in scopes.ALL_SCOPES},
                }
            },
        },
    )
    for path, methods, view in sorted(rules, key=lambda rule: rule[0]):
        openapi_path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", path)
        operations = {m.lower(): _operation(view, error_statuses) for m in sorted(methods)}
        parameters = [_path_parameter(name) for name in re.findall(r"{([a-z_]+)}", openapi_path)]
        for operation in operations.values():
            operation.setdefault("parameters", []).extend(copy.deepcopy(parameters))
            if not operation["parameters"]:
                del operation["parameters"]
        spec.path(path=openapi_path, operations=operations)
    return spec.to_dict()
