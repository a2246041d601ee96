"""Warnings: publish, read (with an ETag), change (If-Match), withdraw, close, review, list."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from schemas.notification import AcknowledgementListSchema
from schemas.openapi import documented
from schemas.warning import (
    ReasonSchema,
    ReviewSchema,
    WarningChangesSchema,
    WarningInputSchema,
    WarningPageSchema,
    WarningQuerySchema,
    WarningSchema,
    WarningVersionListSchema,
)
from service import warnings
from service.api import documents
from service.api.access import current_caller, protected
from service.api.recording import current_entry
from service.database import today
from service.errors import PreconditionRequired
from service.households import resolve_household
from service.models.warning import WarningMarker
from service.notifications import acknowledgements_of, warnings_read
from service.oauth.scopes import HOUSEHOLDS_READ, WARNINGS_WRITE

bp = Blueprint("warnings", __name__, url_prefix="/warnings")


def _record_shown(shown: list[dict[str, Any]]) -> None:
    """Name in the audit entry every record the warning documents show."""
    entry = current_entry()
    entry.returning("warning", [doc["id"] for doc in shown])
    entry.returning("household", [doc["household_id"] for doc in shown])
    entry.returning("incident", [i["id"] for doc in shown for i in doc["incidents"]])
    entry.returning("member", [p["member_id"] for doc in shown
                               for p in doc["persons_of_concern"] if p["member_id"]])  # fmt: skip


def _answer(warning: WarningMarker, status: int = 200) -> Response:
    """Return the warning with its ETag, naming everything shown in the audit entry."""
    document = documents.warning(warning, today())
    _record_shown([document])
    response = jsonify(documents.dump(WarningSchema, document))
    response.status_code = status
    response.set_etag(str(warning.version))
    return response


def _expected_version() -> int:
    """The version the caller read, from If-Match (its ETag); 428 without one."""
    if not request.if_match:
        raise PreconditionRequired(
            "Send If-Match with the ETag you read, so that you never overwrite a change you did "
            "not see."
        )
    tags = [tag for tag in request.if_match.as_set() if tag.isdigit()]
    return int(tags[0]) if len(tags) == 1 else -1


@bp.post("")
@protected(WARNINGS_WRITE, action="warning:create")
@documented(request=WarningInputSchema, response=WarningSchema, status=201, etag=True)
def publish() -> Response:
    """Publish a warning about a household, resting on at least one incident.

    The household is registered if it is new, and your agency's involvement too if it has none.
    """
    body = documents.load(WarningInputSchema, request.get_json())
    agency_id = current_caller().agency_id
    household = resolve_household(body.pop("household"), agency_id)
    evidence = warnings.Evidence(
        tuple(body.pop("incidents", ())), tuple(body.pop("incident_ids", ()))
    )
    draft = warnings.WarningDraft(**_as_tuples(body))
    warning = warnings.publish_warning(household, agency_id, draft, evidence, today())
    return _answer(warning, 201)


def _as_tuples(body: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in body.items()}


@bp.get("")
@protected(HOUSEHOLDS_READ, action="warning:list", read_only=True)
@documented(query=WarningQuerySchema, response=WarningPageSchema)
def list_warnings() -> dict[str, Any]:
    """List the warnings your agency may read, newest first; follow `next` for more."""
    query = documents.load(WarningQuerySchema, request.args)
    filters = warnings.WarningFilter(
        household_id=query.get("household_id"), status=query.get("status"),
        issued_by_me=query.get("issued_by") == "mine",
        review_due_before=query.get("review_due_before"),
    )  # fmt: skip
    page, cursor = warnings.list_warnings(
        current_caller().agency_id, filters, cursor=query.get("cursor"), limit=query["limit"]
    )
    shown = documents.warnings(page, today())
    _record_shown(shown)
    warnings_read(page, current_caller().agency_id, today())
    return documents.dump(WarningPageSchema, {"items": shown, "next": cursor})


@bp.get("/<warning_id>")
@protected(HOUSEHOLDS_READ, action="warning:read", read_only=True)
@documented(response=WarningSchema, etag=True)
def read_warning(warning_id: str) -> Response:
    """Read a warning in detail, with its ETag (send it as If-Match to change it)."""
    warning = warnings.get_visible_warning(warning_id, current_caller().agency_id)
    warnings_read([warning], current_caller().agency_id, today())
    return _answer(warning)


@bp.patch("/<warning_id>")
@protected(WARNINGS_WRITE, action="warning:update")
@documented(
    request=WarningChangesSchema, response=WarningSchema, etag=True, if_match=True, errors=(409,)
)
def change_warning(warning_id: str) -> Response:
    """Change your agency's active warning: a new version. Needs If-Match (412 when stale)."""
    changes = _as_tuples(documents.load(WarningChangesSchema, request.get_json()))
    warning = warnings.get_own_warning(warning_id, current_caller().agency_id)
    warnings.check_version(warning, _expected_version())
    warnings.update_warning(warning, current_caller().agency_id, changes, today())
    return _answer(warning)


@bp.get("/<warning_id>/versions")
@protected(HOUSEHOLDS_READ, action="warning:versions", read_only=True)
@documented(response=WarningVersionListSchema)
def list_versions(warning_id: str) -> dict[str, Any]:
    """Every version of the warning, oldest first."""
    warning = warnings.get_visible_warning(warning_id, current_caller().agency_id)
    warnings_read([warning], current_caller().agency_id, today())
    shown = [documents.warning_version(v) for v in warnings.list_versions(warning)]
    entry = current_entry()
    entry.returning("household", [warning.household_id])
    entry.returning("incident", [i for v in shown for i in v["warning"]["incident_ids"]])
    concern = [p for v in shown for p in v["warning"]["persons_of_concern"]]
    entry.returning("member", [p["member_id"] for p in concern if "member_id" in p])
    return documents.dump(WarningVersionListSchema, {"items": shown})


@bp.post("/<warning_id>/withdraw")
@protected(WARNINGS_WRITE, action="warning:withdraw")
@documented(request=ReasonSchema, response=WarningSchema, etag=True, errors=(409,))
def withdraw(warning_id: str) -> Response:
    """Withdraw your agency's warning as entered in error: it leaves every flag and briefing."""
    reason = documents.load(ReasonSchema, request.get_json())["reason"]
    warning = warnings.get_own_warning(warning_id, current_caller().agency_id)
    return _answer(warnings.withdraw_warning(warning, current_caller().agency_id, reason))


@bp.post("/<warning_id>/close")
@protected(WARNINGS_WRITE, action="warning:close")
@documented(request=ReasonSchema, response=WarningSchema, etag=True, errors=(409,))
def close(warning_id: str) -> Response:
    """Close your agency's warning (inactive): it stays in history and in incident counts."""
    reason = documents.load(ReasonSchema, request.get_json())["reason"]
    warning = warnings.get_own_warning(warning_id, current_caller().agency_id)
    return _answer(warnings.close_warning(warning, current_caller().agency_id, reason))


@bp.post("/<warning_id>/review")
@protected(WARNINGS_WRITE, action="warning:review")
@documented(request=ReviewSchema, response=WarningSchema, etag=True, errors=(409,))
def review(warning_id: str) -> Response:
    """Review your agency's warning: continue it to a new review date, or close it."""
    body = documents.load(ReviewSchema, request.get_json())
    agency_id = current_caller().agency_id
    warning = warnings.get_own_warning(warning_id, agency_id)
    reviewed = warnings.review_warning(
        warning, agency_id, today(), continue_until=body.get("review_by"),
        close_reason=body.get("reason"),
    )  # fmt: skip
    return _answer(reviewed)


@bp.get("/<warning_id>/acknowledgements")
@protected(HOUSEHOLDS_READ, action="warning:acknowledgements")
@documented(response=AcknowledgementListSchema)
def acknowledgements(warning_id: str) -> dict[str, Any]:
    """Which agencies were told your warning was published, and which have acknowledged it
    (issuing agency only)."""
    warning = warnings.get_own_warning(warning_id, current_caller().agency_id)
    told = acknowledgements_of(warning)
    current_entry().returning("agency", [state.agency_id for state in told])
    return documents.dump(AcknowledgementListSchema, {"items": [
        {"agency_id": state.agency_id, "notified_at": state.notified_at,
         "acknowledged_at": state.acknowledgement.acknowledged_at
         if state.acknowledgement is not None else None}
        for state in told
    ]})  # fmt: skip
