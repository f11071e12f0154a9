"""GB 11643 numbers: the check character, region, birth date and sequence rules."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.idcard.idnumber import check, check_character, mask, with_check_character


def test_the_standard_example_number() -> None:
    # the example number printed in GB 11643-1999 itself
    assert check_character("11010519491231002") == "X"
    result = check("11010519491231002X", kind="resident", birth_date=date(1949, 12, 31),
                   gender_code="2")
    assert result.valid, result.warnings


@given(st.text("0123456789", min_size=17, max_size=17))
def test_any_single_digit_change_breaks_the_check(first17: str) -> None:
    number = with_check_character(first17)
    for i in range(17):
        changed = first17[:i] + str((int(first17[i]) + 1) % 10) + first17[i + 1:]
        assert check_character(changed) != number[17]


@pytest.mark.parametrize(("number", "kwargs", "warning"), [
    ("3303241960010100", {}, "ID number is not 17 digits and a check character"),
    (with_check_character("99032419600101001"), {}, "ID number region code names no province"),
    (with_check_character("33032419601301001"), {}, "ID number contains no valid birth date"),
    (with_check_character("33032419600101001"), {"birth_date": date(1960, 1, 2)},
     "ID number birth date differs from the card's birth date"),
    (with_check_character("33032419600101001"), {"gender_code": "2"},
     "ID number sequence parity disagrees with the card's gender"),
])
def test_resident_number_problems(number: str, kwargs: dict[str, object], warning: str) -> None:
    result = check(number, kind="resident", **kwargs)  # type: ignore[arg-type]
    assert not result.valid
    assert warning in result.warnings
    assert all(number not in w for w in result.warnings)


def test_permit_numbers_must_carry_the_permit_prefix() -> None:
    resident_style = with_check_character("33032419900214004")
    assert not check(resident_style, kind="hk_macao_taiwan").valid
    assert check(with_check_character("82000019900214004"), kind="hk_macao_taiwan").valid


def test_2017_permanent_residence_number_shape() -> None:
    assert check("USA317506280125", kind="foreign_permanent_2017", nationality="USA").valid
    assert not check("USA31750628012", kind="foreign_permanent_2017").valid
    assert not check("GBR317506280125", kind="foreign_permanent_2017", nationality="USA").valid


def test_2023_numbers_start_with_nine_and_a_province() -> None:
    assert check(with_check_character("93172419880917002"), kind="foreign_permanent_2023").valid
    assert not check(with_check_character("33172419880917002"),
                     kind="foreign_permanent_2023").valid


def test_mask_keeps_first_six_and_last_four() -> None:
    assert mask("32050919490312001X") == "320509********001X"
    assert mask("USA317506280125") == "USA317*****0125"
    assert mask("12345") == "*****"
