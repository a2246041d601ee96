"""The OpenAPI 3.1 document, generated from the routes' declarations and their schemas."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from schemas.problem import ProblemSchema

View = TypeVar("View", bound=Callable[..., Any])
ACTING_CONTEXT_PARAMETERS = [
    {
        "name": "X-Acting-Practitioner",
        "in": "header",
        "required": True,
        "description": "Your case system's opaque reference for the practitioner acting. "
        "Recorded in the audit log.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}$"},
    },
    {
        "name": "X-Purpose-Of-Use",
        "in": "header",
        "required": True,
        "description": "Why the data is needed. Recorded in the audit log.",
        "schema": {
            "type": "string",
            "enum": ["pre_visit", "case_work", "safeguarding_enquiry", "emergency", "audit"],
        },
    },
]
_ERROR_STATUSES = {
    "400": "Invalid input (fields named in `errors`)",
    "401": "Missing, expired or revoked token",
    "403": "Token lacks the scope, or the object is not yours",
    "404": "Not found",
    "413": "Request body too large",
    "415": "Request body must be JSON",
    "503": "Service unavailable (for example the audit log cannot be written)",
}


@dataclass(frozen=True)
class ApiDoc:
    """What a route documents beyond its access policy."""

    response: type[Schema] | None
    request: type[Schema] | None
    query: type[Schema] | None
    status: int


def documented(
    *,
    response: type[Schema] | None = None,
    request: type[Schema] | None = None,
    query: type[Schema] | None = None,
    status: int = 200,
) -> Callable[[View], View]:
    """Attach the schemas of a route for the OpenAPI document."""

    def decorate(view: View) -> View:
        view.api_doc = ApiDoc(response, request, query, status)  # type: ignore[attr-defined]
        return view

    return decorate


def _operation(view: Callable[..., Any]) -> dict[str, Any]:
    policy = getattr(view, "access_policy", None)
    doc: ApiDoc = getattr(view, "api_doc", ApiDoc(None, None, None, 200))
    summary, _, description = (inspect.getdoc(view) or "").partition("\n")
    operation: dict[str, Any] = {"summary": summary, "description": description.strip()}
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "Success"}
    if doc.response is not None:
        ok["content"] = {"application/json": {"schema": doc.response}}
    responses[str(doc.status)] = ok
    problem = {"application/problem+json": {"schema": "Problem"}}
    for status, text in _ERROR_STATUSES.items():
        responses[status] = {"description": text, "content": problem}
    operation["responses"] = responses
    parameters: list[dict[str, Any]] = []
    if policy is not None and not policy.public:
        operation["security"] = [{"oauth2": list(policy.scopes)}]
        if len(policy.scopes) > 1:
            operation["description"] += (
                f"\n\nNeeds any one of the scopes: {', '.join(policy.scopes)}."
            )
        if policy.acting_context:
            parameters.extend(ACTING_CONTEXT_PARAMETERS)
    else:
        operation["security"] = []
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


def build_openapi(
    rules: list[tuple[str, set[str], Callable[..., Any]]], issuer: str
) -> dict[str, Any]:
    """Return the OpenAPI document for ``rules``: (path, methods, view) of the JSON API."""
    spec = APISpec(
        title="alertshare",
        version="1",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "Multi-agency hostility warnings about households."},
    )
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {"clientCredentials": {"tokenUrl": f"{issuer}/oauth/token", "scopes": {}}},
        },
    )
    for path, methods, view in sorted(rules, key=lambda rule: rule[0]):
        openapi_path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", path)
        operations = {m.lower(): _operation(view) for m in sorted(methods)}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{([a-z_]+)}", openapi_path)
        ]
        for operation in operations.values():
            operation.setdefault("parameters", []).extend(parameters)
            if not operation["parameters"]:
                del operation["parameters"]
        spec.path(path=openapi_path, operations=operations)
    return spec.to_dict()
