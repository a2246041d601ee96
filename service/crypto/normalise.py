"""Normalise and validate identifying values before blind indexing or storage.

Blind indexes only match when both sides normalise identically, so every rule here is part of
the index format: changing one means recomputing every index that uses it.

Text rules (normalise_text): Unicode NFKC, case-folded; apostrophes (' ‘ ’ ʼ ` ′) are removed so
"O'Brien" == "OBrien"; every other punctuation character (hyphens, dots, commas, slashes, ...)
and every whitespace run becomes a single space; invisible format/control characters are
dropped; the result is trimmed. So "O'Brien-Smith " -> "obrien smith". Accents are kept
("Zoë" != "Zoe") because stripping them can merge genuinely different names.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime

_APOSTROPHES = frozenset("'\u2018\u2019\u02bc`\u2032")
_POSTCODE = re.compile(
    r"GIR0AA|(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?"
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])"
    r"[0-9][ABD-HJLNP-UW-Z]{2}"
)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NHS_WEIGHTS = range(10, 1, -1)


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _map_char(ch: str) -> str:
    if ch in _APOSTROPHES:
        return ""
    if ch.isspace():
        return " "
    category = unicodedata.category(ch)
    if category.startswith("P"):
        return " "
    if category in ("Cc", "Cf"):
        return ""
    return ch


def normalise_text(value: str) -> str:
    """Return the NFKC, case-folded, punctuation-free, single-spaced form of `value`."""
    text = unicodedata.normalize("NFKC", _require_str(value, "text"))
    # NFKC again after casefold, since case folding can produce unnormalised sequences.
    text = unicodedata.normalize("NFKC", text.casefold())
    text = "".join(_map_char(ch) for ch in text)
    # Removing characters can leave newly composable sequences, so normalise once more.
    return " ".join(unicodedata.normalize("NFKC", text).split())


def normalise_address_line(value: str) -> str:
    """Return normalise_text(value); abbreviations are deliberately not expanded.

    Expanding "St" or "Rd" guesses meaning ("St" is Street or Saint), so lines only match when
    written the same way up to case, punctuation and spacing ("Flat 3" -> "flat 3").
    """
    return normalise_text(value)


def normalise_postcode(value: str) -> str:
    """Validate a UK postcode and return its canonical "OUTWARD INWARD" form, e.g. "ME1 2AB"."""
    compact = "".join(_require_str(value, "postcode").upper().split())
    if not _POSTCODE.fullmatch(compact):
        raise ValueError("postcode is not a valid UK postcode (expected e.g. 'ME1 2AB')")
    # The inward code is always the last three characters.
    return f"{compact[:-3]} {compact[-3:]}"


def normalise_uprn(value: str | int) -> str:
    """Validate a UPRN (1-12 digits) and return it without leading zeros."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    digits = "".join(_require_str(value, "UPRN").split())
    if not re.fullmatch(r"[0-9]{1,12}", digits) or int(digits) == 0:
        raise ValueError("UPRN must be a positive number of 1 to 12 digits")
    return str(int(digits))


def _nhs_check_digit(first_nine: str) -> int | None:
    remainder = sum(int(d) * w for d, w in zip(first_nine, _NHS_WEIGHTS, strict=True)) % 11
    check = 11 - remainder
    if check == 11:
        return 0
    return None if check == 10 else check  # 10 means no valid number has these digits.


def normalise_nhs_number(value: str) -> str:
    """Validate an NHS number (10 digits, modulus 11) and return the bare digits."""
    digits = "".join(_require_str(value, "NHS number").replace("-", " ").split())
    if not re.fullmatch(r"[0-9]{10}", digits):
        raise ValueError("NHS number must be exactly 10 digits")
    if _nhs_check_digit(digits[:9]) != int(digits[9]):
        raise ValueError("NHS number check digit is invalid")
    return digits


def normalise_date(value: date | str) -> str:
    """Return a date (or strict "YYYY-MM-DD" string) in ISO form."""
    if isinstance(value, datetime):
        # A datetime's calendar date depends on its time zone, so make the caller choose.
        raise TypeError("expected a date, not a datetime; pass value.date()")
    if isinstance(value, date):
        return value.isoformat()
    text = _require_str(value, "date").strip()
    if not _ISO_DATE.fullmatch(text):
        raise ValueError("date must be in YYYY-MM-DD form")
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise ValueError("date is not a real calendar date")
