"""The field's rules: review dates by category, and the order of precautions."""

from __future__ import annotations

from datetime import date

import pytest

from service.vocabulary import PRECAUTIONS, add_months, default_review_date, strictest_first


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [(date(2026, 1, 31), 1, date(2026, 2, 28)), (date(2024, 1, 31), 1, date(2024, 2, 29)),
     (date(2026, 11, 24), 3, date(2027, 2, 24)), (date(2026, 8, 31), 6, date(2027, 2, 28)),
     (date(2026, 12, 15), 12, date(2027, 12, 15))],
)  # fmt: skip
def test_add_months_keeps_the_day_or_takes_the_months_last(
    day: date, months: int, expected: date
) -> None:
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("categories", "months"),
    [(["weapons"], 3), (["verbal_abuse", "weapons"], 3), (["assault"], 6),
     (["threat_of_violence", "verbal_abuse"], 6), (["hate_incident"], 6), (["harassment"], 6),
     (["verbal_abuse"], 12), (["intimidating_animals", "property_damage"], 12)],
)  # fmt: skip
def test_review_date_defaults_by_category_earliest_wins(categories: list[str], months: int) -> None:
    today = date(2026, 11, 24)
    assert default_review_date(categories, today) == add_months(today, months)


def test_precautions_strictest_first() -> None:
    assert list(PRECAUTIONS)[:4] == [
        "do_not_visit",
        "police_escort",
        "no_lone_visit",
        "joint_visit",
    ]
    assert strictest_first({"daylight_only", "joint_visit", "do_not_visit"}) == [
        "do_not_visit", "joint_visit", "daylight_only"]  # fmt: skip
