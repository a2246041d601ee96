"""The field's words: categories of hostility, precautions, review periods and the pre-visit
questions, from the partnership's lone-working guidance."""

from __future__ import annotations

from datetime import date

CATEGORIES = (
    "verbal_abuse", "written_threat", "aggressive_behaviour", "weapons", "harassment",
    "hate_incident", "assault", "property_damage", "abuse_of_others", "intimidating_animals",
    "threat_of_violence", "cumulative_low_level",
)  # fmt: skip

# Each alone may not warrant a warning; together, across agencies, they add up.
LOW_LEVEL_CATEGORIES = frozenset(
    {"verbal_abuse", "written_threat", "aggressive_behaviour", "harassment", "cumulative_low_level"}
)
# Low-level incidents from this many agencies, this many in all, with no active warning over
# them, prompt the practitioner to consider one.
CUMULATIVE_AGENCIES, CUMULATIVE_INCIDENTS = 2, 3

# Strictest first: a briefing lists the precautions in this order.
PRECAUTIONS = {
    "do_not_visit": "Do not visit the home; meet elsewhere or work by phone.",
    "police_escort": "Visit only with a police escort.",
    "no_lone_visit": "Never visit alone.",
    "joint_visit": "Visit jointly with another practitioner or agency.",
    "neutral_venue": "Meet at a neutral venue, not in the home.",
    "animals_secured_before_entry": "Ask for animals to be secured before you go in.",
    "daylight_only": "Visit in daylight hours only.",
    "check_in_interval": "Check in with your office at agreed intervals during the visit.",
    "phone_contact_only": "Contact by phone only.",
}

RISK_LEVELS = ("low", "medium", "high")

# Months until a warning's review, by category; a warning takes the earliest of its categories'.
REVIEW_MONTHS = {"weapons": 3, "assault": 6, "threat_of_violence": 6, "hate_incident": 6,
                 "harassment": 6}  # fmt: skip
DEFAULT_REVIEW_MONTHS = 12
MAX_REVIEW_MONTHS = 12

# From the guidance's "Questions for professionals to ask themselves" before contact.
PRE_VISIT_QUESTIONS = (
    "Should this visit be made jointly with another agency, a colleague or manager?",
    "Am I visiting at the end of the day, when it is dark and everyone has gone home?",
    "Am I familiar with the location, the home, and access to the property and road?",
    "Could this visit be arranged at a neutral venue?",
    "Do I have a mobile phone or another way of summoning help, such as a personal alarm?",
    "Do my colleagues or line manager know where I am going and when I should be back?",
    "Do my family know how to contact someone from work if I do not come home when expected?",
    "Have I taken basic precautions: social media privacy, ex-directory number, not on the "
    "open electoral register?",
    "Is it possible for me to continue to work effectively with this family?",
    "Ask who else is in the home, and record their names.",
)
CHILDREN_PROMPT = (
    "Children live here. If you feel fearful or intimidated, consider how the child feels in this "
    "home and what living with hostility or aggression means for them; include it in your "
    "assessment."
)
CUMULATIVE_PROMPT = (
    "Several agencies have recorded low-level incidents here (verbal abuse, threats, "
    "harassment) with no warning covering them. Their cumulative effect may warrant a warning: "
    "consider one with the agencies involved."
)


def add_months(day: date, months: int) -> date:
    """Return the same day ``months`` later (the month's last day when it is shorter)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return day.replace(year=year, month=month, day=candidate)
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has 28 days")


def default_review_date(categories: list[str], today: date) -> date:
    """Return when a warning with ``categories`` falls due for review (earliest wins)."""
    months = min(REVIEW_MONTHS.get(category, DEFAULT_REVIEW_MONTHS) for category in categories)
    return add_months(today, months)


def strictest_first(precautions: set[str]) -> list[str]:
    """Order precautions from the strictest (do_not_visit) down."""
    return [name for name in PRECAUTIONS if name in precautions]
