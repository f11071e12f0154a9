"""ID numbers (GB 11643-1999): shape, region code, birth date, ISO 7064 MOD 11-2 check character.

``check`` never raises for a bad number: it reports validity and human-readable warnings that
name the problem but never repeat the number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from devices.idcard.codes import PROVINCES

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
PERMIT_PREFIXES = ("810000", "820000", "830000")
"""Hong Kong, Macao and Taiwan residence permits."""

_EIGHTEEN = re.compile(r"\d{17}[\dX]")
_PR_2017 = re.compile(r"[A-Z]{3}\d{12}")


def check_character(first17: str) -> str:
    """The MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("the check character needs exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def with_check_character(first17: str) -> str:
    """A whole 18-character number from its first 17 digits."""
    return first17 + check_character(first17)


def mask(number: str) -> str:
    """Show the first 6 and last 4 characters only."""
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


@dataclass
class IdNumberCheck:
    """The result of checking a number against its rules and the card's other fields."""

    valid: bool
    """Every applicable rule holds."""
    warnings: list[str] = field(default_factory=list)
    """One line per problem found, never containing the number itself."""


def _birth_in(digits: str) -> date | None:
    try:
        return date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def check(number: str, *, kind: str, birth_date: date | None = None,
          gender_code: str | None = None, nationality: str | None = None) -> IdNumberCheck:
    """Check a card's number; ``kind`` is the card type's value (resident, hmt, ...)."""
    result = IdNumberCheck(valid=True)

    def fail(message: str) -> None:
        result.valid = False
        result.warnings.append(message)

    if kind == "foreign_permanent_2017":
        if not _PR_2017.fullmatch(number):
            fail("permanent-residence number is not 3 letters and 12 digits")
        elif nationality and number[:3] != nationality:
            fail("permanent-residence number does not start with the card's nationality code")
        result.warnings.append(
            "no check-character rule is applied to 2017 permanent-residence numbers")
        return result

    if not _EIGHTEEN.fullmatch(number):
        fail("ID number is not 17 digits and a check character")
        return result
    if number[17] != check_character(number[:17]):
        fail("ID number check character is wrong")
    if kind == "resident" and number[:2] not in PROVINCES:
        fail("ID number region code names no province")
    if kind == "hk_macao_taiwan" and not number.startswith(PERMIT_PREFIXES):
        fail("residence permit number does not start with 810000, 820000 or 830000")
    if kind == "foreign_permanent_2023" and (number[0] != "9" or number[1:3] not in PROVINCES):
        fail("permanent-residence number does not start with 9 and a province code")
    born = _birth_in(number[6:14])  # 2023 permanent-residence numbers: 9 PP NNN YYYYMMDD ...
    if born is None:
        fail("ID number contains no valid birth date")
    elif birth_date is not None and born != birth_date:
        fail("ID number birth date differs from the card's birth date")
    if gender_code in ("1", "2"):
        odd = int(number[16]) % 2 == 1
        if odd != (gender_code == "1"):
            fail("ID number sequence parity disagrees with the card's gender")
    return result
