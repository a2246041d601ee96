"""Use cases for warnings: publish, change (each change a new version), withdraw, close,
review; who may see which; and the flag view every partner agency gets from a look-up."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from itertools import accumulate
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnClause,
    ColumnElement,
    Integer,
    Row,
    Select,
    Subquery,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased, selectinload

from service.context import RECORD_ID_PATTERN
from service.database import db, insert_new, utcnow
from service.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed
from service.incidents import IncidentReport, check_report, new_incident
from service.involvements import (
    ensure_involved,
    involved,
)
from service.models.agency import Agency, AgencyRow
from service.models.household import Household, Person
from service.models.incident import Incident, IncidentRow
from service.models.warning import (
    WarningMarker,
    WarningRow,
    WarningShare,
    WarningVersion,
    warning_incident,
)
from service.notifications import warning_changed
from service.vocabulary import (
    CATEGORIES,
    MAX_REVIEW_MONTHS,
    PRECAUTIONS,
    RISK_LEVELS,
    add_months,
    default_review_date,
)

WITHDRAWN = "entered-in-error"
# Loaded with every warning read in bulk, in one query each rather than one per warning.
_WITH_DETAIL = (selectinload(WarningMarker.incidents), selectinload(WarningMarker.shares))
RISK_ORDER = {level: rank for rank, level in enumerate(RISK_LEVELS)}


@dataclass(frozen=True)
class SubjectInformed:
    """Whether the person the warning is about was told of it, or why not (and when to recheck)."""

    informed: bool
    informed_on: date | None = None
    reason_withheld: str | None = None
    recheck_on: date | None = None


@dataclass(frozen=True)
class WarningDraft:
    """A warning's content as its issuer states it."""

    categories: tuple[str, ...]
    risk_level: str
    subject_informed: SubjectInformed
    children_in_household: bool
    precautions: tuple[str, ...] = ()
    persons_of_concern: tuple[dict[str, str], ...] = ()
    handling: str = "involved"
    shared_with: tuple[str, ...] = ()
    review_by: date | None = None


@dataclass(frozen=True)
class Evidence:
    """The incidents a new warning rests on: new ones reported with it, and recorded ones."""

    new_incidents: tuple[IncidentReport, ...] = ()
    incident_ids: tuple[str, ...] = ()


# --- who may see what --------------------------------------------------------------------------


def may_see_detail(warning: WarningMarker | WarningRow, agency_id: str, is_involved: bool) -> bool:
    """The issuer always; otherwise an involved agency, if it is a restricted warning's sharer."""
    if warning.issuing_agency_id == agency_id:
        return True
    if warning.status == WITHDRAWN or not is_involved:
        return False
    return warning.handling == "involved" or agency_id in warning.shared_with


def may_know_categories(
    handling: str, issuing_agency_id: str, agency_id: str, shared_with_agency: bool
) -> bool:
    """Every partner agency may know what kind of risk a warning is about, unless restricted."""
    return handling == "involved" or issuing_agency_id == agency_id or shared_with_agency


def _visible_to(agency_id: str) -> ColumnElement[bool]:
    shared = exists().where(
        WarningShare.warning_id == WarningMarker.id, WarningShare.agency_id == agency_id
    )
    return or_(
        WarningMarker.issuing_agency_id == agency_id,
        and_(
            WarningMarker.status != WITHDRAWN,
            involved(agency_id, WarningMarker.household_id),
            or_(WarningMarker.handling == "involved", shared),
        ),
    )


def get_visible_warning(warning_id: str, agency_id: str) -> WarningMarker:
    """Return the warning if the agency may see its detail; NotFound otherwise."""
    query = select(WarningMarker).where(WarningMarker.id == warning_id, _visible_to(agency_id))
    warning = db.session.scalars(query).first()
    if warning is None:
        raise NotFound("No such warning among those your agency may see.")
    return warning


def get_own_warning(warning_id: str, agency_id: str) -> WarningMarker:
    """Return a warning for its issuer to change; others may see it but not change it."""
    warning = get_visible_warning(warning_id, agency_id)
    if warning.issuing_agency_id != agency_id:
        raise Forbidden("Only the issuing agency may change this warning.")
    return warning


# --- publishing and changing -------------------------------------------------------------------


def _check_draft(
    draft: WarningDraft, household: Household, issuer: str, today: date
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(draft.categories) - set(CATEGORIES))
    if unknown or not draft.categories:
        errors["categories"] = [f"Unknown: {unknown}" if unknown else "At least one."]
    if draft.risk_level not in RISK_LEVELS:
        errors["risk_level"] = [f"One of: {', '.join(RISK_LEVELS)}."]
    unknown = sorted(set(draft.precautions) - set(PRECAUTIONS))
    if unknown:
        errors["precautions"] = [f"Unknown: {unknown}"]
    if draft.handling == "involved" and draft.shared_with:
        errors["shared_with"] = ["Only for restricted handling."]
    missing = [a for a in draft.shared_with if db.session.get(Agency, a) is None or a == issuer]
    if missing:
        errors["shared_with"] = [f"Not other agencies of the partnership: {missing}"]
    named = [p["member_id"] for p in draft.persons_of_concern if "member_id" in p]
    strangers = set(named) - {p.id for p in household.members} if named else set()
    if strangers:
        errors["persons_of_concern"] = [f"Not members of this household: {sorted(strangers)}"]
    if draft.review_by is not None and not (
        today < draft.review_by <= add_months(today, MAX_REVIEW_MONTHS)
    ):
        errors["review_by"] = [f"Must be after today and at most {MAX_REVIEW_MONTHS} months ahead."]
    return errors


def _apply(warning: WarningMarker, draft: WarningDraft, today: date) -> None:
    warning.categories = " ".join(dict.fromkeys(draft.categories))
    warning.risk_level = draft.risk_level
    warning.precautions = " ".join(dict.fromkeys(draft.precautions))
    warning.persons_of_concern = json.dumps(list(draft.persons_of_concern))
    warning.handling = draft.handling
    warning.shares = [
        WarningShare(warning_id=warning.id, agency_id=a) for a in dict.fromkeys(draft.shared_with)
    ]
    warning.children_in_household = draft.children_in_household
    informed = draft.subject_informed
    warning.subject_informed = informed.informed
    warning.informed_on = informed.informed_on
    warning.reason_withheld = informed.reason_withheld
    warning.recheck_on = informed.recheck_on
    warning.review_by = draft.review_by or default_review_date(list(draft.categories), today)


def publish_warning(
    household: Household, issuer: str, draft: WarningDraft, evidence: Evidence, today: date
) -> WarningMarker:
    """Publish a warning about ``household``, resting on at least one incident.

    New incidents take the warning's categories unless they give their own. The issuer is
    registered as involved with the household if it was not.
    """
    errors = _check_draft(draft, household, issuer, today)
    if not evidence.new_incidents and not evidence.incident_ids:
        errors["incidents"] = ["A warning rests on at least one incident: report or cite one."]
    for n, report in enumerate(evidence.new_incidents):
        errors.update(check_report(_with_categories(report, draft), today, f"incidents.{n}."))
    cited = _household_incidents(household.id, evidence.incident_ids)
    if len(cited) != len(set(evidence.incident_ids)):
        errors["incident_ids"] = ["Not all are incidents recorded at this household."]
    if errors:
        raise InvalidInput("The warning is not valid.", errors=errors)
    ensure_involved(household, issuer)
    reported = [
        new_incident(household, issuer, _with_categories(report, draft), today)
        for report in evidence.new_incidents
    ]
    now = utcnow()
    warning = WarningMarker(
        household_id=household.id, issuing_agency_id=issuer, status="active", version=1,
        created_at=now, updated_at=now,
    )  # fmt: skip
    _apply(warning, draft, today)
    warning.incidents = cited + reported
    # Written at once rather than by the session's flush (see insert_new): this is the busiest
    # write there is.
    links = [
        (warning_incident, {"warning_id": warning.id, "incident_id": i.id})
        for i in warning.incidents
    ]
    version = _version(warning, "published", issuer)
    insert_new(*reported, warning, *warning.shares, version, rows=links)
    warning_changed(warning, "published")  # as every version is (_keep_version)
    return warning


def _with_categories(report: IncidentReport, draft: WarningDraft) -> IncidentReport:
    return report if report.categories else replace(report, categories=draft.categories)


def _household_incidents(household_id: str, incident_ids: tuple[str, ...]) -> list[Incident]:
    if not incident_ids:
        return []
    query = select(Incident).where(
        Incident.id.in_(set(incident_ids)), Incident.household_id == household_id
    )
    return list(db.session.scalars(query))


def draft_of(warning: WarningMarker) -> WarningDraft:
    """Return the warning's current content as a draft (to apply changes to)."""
    return WarningDraft(
        categories=tuple(warning.category_list),
        risk_level=warning.risk_level,
        precautions=tuple(warning.precaution_list),
        persons_of_concern=tuple(json.loads(warning.persons_of_concern or "[]")),
        handling=warning.handling,
        shared_with=tuple(warning.shared_with),
        children_in_household=warning.children_in_household,
        subject_informed=SubjectInformed(
            warning.subject_informed,
            warning.informed_on,
            warning.reason_withheld,
            warning.recheck_on,
        ),  # fmt: skip
        review_by=warning.review_by,
    )


def check_version(warning: WarningMarker, expected: int) -> None:
    """Refuse a change made against a version other than the current one."""
    if warning.version != expected:
        raise PreconditionFailed(
            f"The warning changed since you read it (now version {warning.version}); read it "
            "again and reapply your change."
        )


def update_warning(
    warning: WarningMarker, agency_id: str, changes: dict[str, Any], today: date
) -> WarningMarker:
    """Change an active warning's content; the change becomes a new version."""
    _require_status(warning, "active", "changed")
    draft = replace(draft_of(warning), **changes)
    if "handling" in changes and changes["handling"] == "involved" and "shared_with" not in changes:
        draft = replace(draft, shared_with=())
    household = db.session.get(Household, warning.household_id)
    assert household is not None
    errors = _check_draft(draft, household, agency_id, today)
    if errors:
        raise InvalidInput("The warning is not valid.", errors=errors)
    _apply(warning, draft, today)
    return _next_version(warning, "updated", agency_id)


def withdraw_warning(warning: WarningMarker, agency_id: str, reason: str) -> WarningMarker:
    """Withdraw a warning entered in error: it leaves every view but its issuer's history."""
    if warning.status == WITHDRAWN:
        raise Conflict("This warning has already been withdrawn.")
    warning.status, warning.status_reason = WITHDRAWN, reason
    return _next_version(warning, "withdrawn", agency_id)


def close_warning(warning: WarningMarker, agency_id: str, reason: str) -> WarningMarker:
    """Close an active warning: it stays in history and in the incident counts."""
    _require_status(warning, "active", "closed")
    warning.status, warning.status_reason = "inactive", reason
    return _next_version(warning, "closed", agency_id)


def review_warning(
    warning: WarningMarker,
    agency_id: str,
    today: date,
    *,
    continue_until: date | None = None,
    close_reason: str | None = None,
) -> WarningMarker:
    """Record a review: the warning continues until a new date, or it is closed."""
    _require_status(warning, "active", "reviewed")
    if close_reason is not None:
        warning.status, warning.status_reason = "inactive", close_reason
        return _next_version(warning, "reviewed", agency_id)
    assert continue_until is not None
    if not today < continue_until <= add_months(today, MAX_REVIEW_MONTHS):
        raise InvalidInput(
            "The review date is not valid.",
            errors={"review_by": [f"After today, at most {MAX_REVIEW_MONTHS} months ahead."]},
        )
    warning.review_by = continue_until
    return _next_version(warning, "reviewed", agency_id)


def _require_status(warning: WarningMarker, status: str, verb: str) -> None:
    if warning.status != status:
        raise Conflict(f"Only an {status} warning can be {verb}; this one is {warning.status}.")


def _next_version(warning: WarningMarker, change: str, agency_id: str) -> WarningMarker:
    warning.version += 1
    warning.updated_at = utcnow()
    _keep_version(warning, change, agency_id)
    return warning


def _keep_version(warning: WarningMarker, change: str, agency_id: str) -> None:
    db.session.add(_version(warning, change, agency_id))
    warning_changed(warning, change)  # every version is announced, in the same unit of work


def _version(warning: WarningMarker, change: str, agency_id: str) -> WarningVersion:
    return WarningVersion(
        warning_id=warning.id, version=warning.version, change=change, changed_by=agency_id,
        snapshot=json.dumps(snapshot(warning), default=str),
    )  # fmt: skip


def snapshot(warning: WarningMarker) -> dict[str, Any]:
    """Return the warning's fields as they stand (what a version keeps)."""
    return {
        "status": warning.status, "status_reason": warning.status_reason,
        "risk_level": warning.risk_level, "categories": warning.category_list,
        "precautions": warning.precaution_list,
        "persons_of_concern": json.loads(warning.persons_of_concern or "[]"),
        "handling": warning.handling, "shared_with": warning.shared_with,
        "children_in_household": warning.children_in_household,
        "subject_informed": {
            "informed": warning.subject_informed, "informed_on": warning.informed_on,
            "reason_withheld": warning.reason_withheld, "recheck_on": warning.recheck_on,
        },
        "review_by": warning.review_by,
        "incident_ids": [incident.id for incident in warning.incidents],
    }  # fmt: skip


def list_versions(warning: WarningMarker) -> list[WarningVersion]:
    """Return every version of the warning, oldest first."""
    query = (
        select(WarningVersion)
        .where(WarningVersion.warning_id == warning.id)
        .order_by(WarningVersion.version)
    )
    return list(db.session.scalars(query))


# --- finding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarningFilter:
    household_id: str | None = None
    status: str | None = None
    issued_by_me: bool = False
    review_due_before: date | None = None


def list_warnings(
    agency_id: str, filters: WarningFilter, *, cursor: str | None, limit: int
) -> tuple[list[WarningMarker], str | None]:
    """Return a page of the warnings the agency may see, newest first, and the next cursor."""
    query = select(WarningMarker).where(_visible_to(agency_id)).options(*_WITH_DETAIL)
    if filters.household_id:
        query = query.where(WarningMarker.household_id == filters.household_id)
    if filters.status:
        query = query.where(WarningMarker.status == filters.status)
    if filters.issued_by_me:
        query = query.where(WarningMarker.issuing_agency_id == agency_id)
    if filters.review_due_before:
        query = query.where(WarningMarker.review_by < filters.review_due_before)
    if cursor is not None:
        created_at, warning_id = decode_cursor(cursor)
        query = query.where(
            or_(
                WarningMarker.created_at < created_at,
                and_(WarningMarker.created_at == created_at, WarningMarker.id < warning_id),
            )
        )
    query = query.order_by(WarningMarker.created_at.desc(), WarningMarker.id.desc())
    page = list(db.session.scalars(query.limit(limit + 1)))
    if len(page) <= limit:
        return page, None
    last = page[limit - 1]
    return page[:limit], encode_cursor(last.created_at, last.id)


def encode_cursor(created_at: datetime, warning_id: str) -> str:
    """Return an opaque cursor for the page after the warning (created_at, id)."""
    raw = f"{created_at.isoformat()}|{warning_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Read a cursor back; a cursor we did not make is invalid input."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, warning_id = raw.split("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive")
        if not RECORD_ID_PATTERN.fullmatch(warning_id):
            raise ValueError("not one of our ids")
        return moment.astimezone(UTC), warning_id  # overflows for a moment no row can have
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as error:
        raise InvalidInput("Bad cursor.", errors={"cursor": ["Not one we gave."]}) from error


@dataclass(frozen=True)
class HouseholdRecord:
    """Every warning about a household, whatever its status, each with its incidents, and
    every incident recorded there, newest first; and the warnings' issuers, by id. Read as
    plain rows (``SealedRow``): a briefing reads many, and ORM instances cost it most."""

    warnings: list[WarningRow]
    incidents: list[IncidentRow]
    issuers: dict[str, AgencyRow]


def household_record(household_id: str) -> HouseholdRecord:
    """Load the household's warnings (with whom they are shared, and their issuers) and
    incidents, each incident once with the warnings resting on it: one query, however much
    the household holds."""
    rows = db.session.connection().execute(_HOUSEHOLD_RECORD, {"household_id": household_id})
    return record_of(record_rows(rows))


RecordRow = tuple[WarningRow | None, AgencyRow | None, IncidentRow | None, str | None]


def record_of(loaded: Iterable[RecordRow]) -> HouseholdRecord:
    """Assemble a household's record from rows of a warning with its issuer, or an incident
    with the id of a warning resting on it (or None), each incident one object for its
    adjacent rows (``record_rows``): the warnings' rows first, in the order they were made,
    then the incidents', newest first."""
    issuers: dict[str, AgencyRow] = {}
    warnings: list[WarningRow] = []
    rows: list[tuple[IncidentRow, str | None]] = []
    for warning, issuer, incident, warning_id in loaded:
        if warning is not None and issuer is not None:
            warnings.append(warning)
            issuers[issuer.id] = issuer
        elif incident is not None:
            rows.append((incident, warning_id))
    resting: dict[str, list[IncidentRow]] = {warning.id: [] for warning in warnings}
    # One statement, one snapshot: a link to a warning not loaded cannot happen on PostgreSQL.
    # Kept as a guard all the same: such an incident would belong to a change newer than this
    # record (it may rest on a restricted warning), so it is left out, as if read before it.
    newer = {incident.id for incident, warning_id in rows
             if warning_id is not None and warning_id not in resting}  # fmt: skip
    incidents: list[IncidentRow] = []
    for incident, warning_id in rows:
        if incident.id in newer:
            continue
        if not incidents or incidents[-1] is not incident:  # an incident's rows are adjacent
            incidents.append(incident)
        if warning_id is not None:
            resting[warning_id].append(incident)
    for warning in warnings:  # in the order of the relationship on WarningMarker
        warning.incidents = sorted(resting[warning.id], key=lambda incident: incident.occurred_on)
    return HouseholdRecord(warnings, incidents, issuers)


def sides(count: int, name: str) -> tuple[list[ColumnClause[int]], Subquery]:
    """The sides of a statement that reads several kinds of row about one record: a subquery of
    ``count`` rows (1, 2, ...) in its column ``side``, and those numbers to join each kind on.
    Joined to the record's row, each kind joins its own copy, so the rows are the kinds' sum,
    never their product."""
    numbers = [literal_column(str(n), Integer) for n in range(1, count + 1)]
    rows = union_all(select(numbers[0].label("side")), *(select(n) for n in numbers[1:]))
    return numbers, rows.subquery(name)


def column_slices(parts: Sequence[Sequence[Any]]) -> list[slice]:
    """Where each part of a statement's columns, selected one after another, sits in a row."""
    ends = list(accumulate(len(part) for part in parts))
    return [slice(end - len(part), end) for part, end in zip(parts, ends, strict=True)]


# What a household's record reads, ending each row of its statements (the incident list's,
# below, and the briefing's, in service.briefings): a warning with whom it is shared (one
# aggregate, not a row per share) and its issuer, or an incident with the id of a warning
# resting on it. Plain columns: run the statements on a Core connection.
_ISSUER = aliased(Agency, name="issuer")
_SHARED_WITH = (
    select(func.aggregate_strings(WarningShare.agency_id, " "))
    .where(WarningShare.warning_id == WarningMarker.id)
    .scalar_subquery()
)
_RECORD_PARTS = (WarningRow.columns(WarningMarker), (_SHARED_WITH,),
                 AgencyRow.columns(_ISSUER), IncidentRow.columns(Incident),
                 (warning_incident.c.warning_id,))  # fmt: skip
RECORD_COLUMNS = tuple(column for part in _RECORD_PARTS for column in part)
_WARNING, _SHARES, _ISSUER_AT, _INCIDENT, _RESTING_ON = column_slices(_RECORD_PARTS)
RECORD_ORDER = (WarningMarker.created_at, WarningMarker.id, Incident.occurred_on.desc(),
                Incident.id)  # fmt: skip


def with_record(
    statement: Select[Any], warnings_on: ColumnElement[bool], incidents_on: ColumnElement[bool]
) -> Select[Any]:
    """Join a statement to the household's warnings (``warnings_on``), with their issuers, and
    to its incidents (``incidents_on``), with the warnings resting on them: what
    ``RECORD_COLUMNS`` reads."""
    return (
        statement.outerjoin(WarningMarker, warnings_on)
        .outerjoin(_ISSUER, _ISSUER.id == WarningMarker.issuing_agency_id)
        .outerjoin(Incident, incidents_on)
        .outerjoin(warning_incident, warning_incident.c.incident_id == Incident.id)
    )


def record_rows(rows: Iterable[Sequence[Any]]) -> Iterator[RecordRow]:
    """Read each row's ``RECORD_COLUMNS`` (ending it) into records: an incident's adjacent rows
    into one object, each issuer one object."""
    issuers: dict[str, AgencyRow] = {}
    incident: IncidentRow | None = None
    start = -len(RECORD_COLUMNS)
    for row in rows:
        values = row[start:]
        if values[_WARNING][0] is not None:
            issuer_id = values[_ISSUER_AT][0]
            if issuer_id not in issuers:
                issuers[issuer_id] = AgencyRow(values[_ISSUER_AT])
            warning = WarningRow(values[_WARNING], values[_SHARES][0])
            yield warning, issuers[issuer_id], None, None
        elif values[_INCIDENT][0] is not None:
            if incident is None or incident.id != values[_INCIDENT][0]:
                incident = IncidentRow(values[_INCIDENT])
            yield None, None, incident, values[_RESTING_ON][0]


# Built once (compiled form and cache key reused): the incident list reads a household's
# record. Two sides (the briefing's statement, in service.briefings, has four): the warnings
# join one, each with its issuer (one agency: no more rows), which every document of a warning
# names; the incidents, each with the warnings resting on it, the other. So the rows are
# warnings plus incidents, never their product, in one round trip (a statement costs more CPU
# than its rows).
(_WARNINGS_SIDE, _INCIDENTS_SIDE), _RECORD_SIDES = sides(2, "record_sides")
_HOUSEHOLD_ID: BindParameter[str] = bindparam("household_id")
_HOUSEHOLD_RECORD = with_record(
    select(*RECORD_COLUMNS).select_from(_RECORD_SIDES),
    and_(_RECORD_SIDES.c.side == _WARNINGS_SIDE, WarningMarker.household_id == _HOUSEHOLD_ID),
    and_(_RECORD_SIDES.c.side == _INCIDENTS_SIDE, Incident.household_id == _HOUSEHOLD_ID),
).order_by(_RECORD_SIDES.c.side, *RECORD_ORDER)


def readable_incidents(
    record: HouseholdRecord, agency_id: str, involved_now: bool
) -> tuple[list[IncidentRow], list[IncidentRow]]:
    """Return the household's incidents the agency may read, newest first, and the others:
    those only warnings it may not read (restricted, or withdrawn) rest on.

    An agency always reads the incidents it recorded, and those no warning rests on.
    """
    resting_on: dict[str, list[WarningRow]] = {}
    for warning in record.warnings:
        for incident in warning.incidents:
            resting_on.setdefault(incident.id, []).append(warning)
    readable = [
        incident for incident in record.incidents
        if incident.agency_id == agency_id or incident.id not in resting_on
        or any(may_see_detail(w, agency_id, involved_now) for w in resting_on[incident.id])
    ]  # fmt: skip
    return readable, [incident for incident in record.incidents if incident not in readable]


# --- the flag view -----------------------------------------------------------------------------


@dataclass
class Flag:
    """What any partner agency may know of a household's warnings, without the detail."""

    active_warnings: bool = False
    risk_level: str | None = None
    categories: set[str] = field(default_factory=set)
    precautions: set[str] = field(default_factory=set)
    review_overdue: bool = False
    issuers: dict[str, AgencyRow] = field(default_factory=dict)


def add_to_flag(
    flag: Flag, warning: Row[Any], agency_id: str, today: date, contacts: dict[str, AgencyRow]
) -> None:
    """Count one active warning into its household's flag, as ``agency_id`` may see it.

    ``warning`` is a row of ``with_active_warnings``: the warning's flag columns, whether it
    is shared with the agency (``shared_with_agency``) and its issuer's columns, ending it.
    ``contacts`` holds the issuers read so far by the look-up, by id (each is read once).
    """
    flag.active_warnings = True
    if flag.risk_level is None or RISK_ORDER[warning.risk_level] > RISK_ORDER[flag.risk_level]:
        flag.risk_level = warning.risk_level
    if may_know_categories(
        warning.handling, warning.issuing_agency_id, agency_id, bool(warning.shared_with_agency)
    ):
        flag.categories.update(warning.categories.split())
        flag.precautions.update(warning.precautions.split())
    flag.review_overdue = flag.review_overdue or warning.review_by < today
    issuer = warning.issuing_agency_id
    if issuer not in contacts:  # read (and opened) once a look-up, however many it issued
        contacts[issuer] = AgencyRow(warning[-len(AgencyRow.stored) :])
    flag.issuers.setdefault(issuer, contacts[issuer])


def with_active_warnings(
    households: Select[*tuple[Any, ...]],
) -> Select[*tuple[Any, ...]]:
    """Extend a select of households with a row per active warning: its flag columns, whether
    it is shared with the agency ``:agency_id``, and its issuer's columns (``AgencyRow``, last)
    (all NULL for a household with none), ordered after the households' own order by when
    each warning was made. Plain columns, no ORM records: run it on a Core connection."""
    shared = exists().where(
        WarningShare.warning_id == WarningMarker.id,
        WarningShare.agency_id == bindparam("agency_id"),
    )
    active = and_(WarningMarker.household_id == Household.id, WarningMarker.status == "active")
    return (
        households.add_columns(
            WarningMarker.issuing_agency_id, WarningMarker.risk_level, WarningMarker.categories,
            WarningMarker.precautions, WarningMarker.handling, WarningMarker.review_by,
            shared.label("shared_with_agency"), *AgencyRow.columns(Agency),
        )
        .outerjoin(WarningMarker, active)
        .outerjoin(Agency, Agency.id == WarningMarker.issuing_agency_id)
        .order_by(WarningMarker.created_at, WarningMarker.id)
    )  # fmt: skip


def members_of(household_ids: Collection[str]) -> dict[str, Person]:
    """Return the members of the households by id, in one query (to name persons of concern)."""
    if not household_ids:
        return {}
    query = select(Person).where(Person.household_id.in_(household_ids))
    return {person.id: person for person in db.session.scalars(query)}
