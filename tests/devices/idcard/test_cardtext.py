"""Text blocks of all four card types: decoding, dates, codes, masking."""

from __future__ import annotations

from datetime import date

import pytest

from devices.idcard.cards import load_card, sample_names
from devices.idcard.cardtext import (
    CardType,
    IdCard,
    decode_text,
    encode_text,
    encode_ucs2,
    mask_name,
)
from devices.idcard.errors import PayloadError
from devices.idcard.idnumber import with_check_character

TODAY = date(2026, 11, 26)


def _resident(**overrides: str) -> dict[str, str]:
    fields = {"name": "王测试", "gender": "1", "nation": "01", "birth_date": "19600101",
              "address": "浙江省温州市永嘉县测试路1号", "id_number": with_check_character(
                  "33032419600101001"), "issuer": "永嘉县公安局", "valid_from": "20100101",
              "valid_to": "20300101"}
    fields.update(overrides)
    return fields


def test_resident_card_fields() -> None:
    card = decode_text(load_card("resident-elderly").text_block(), today=TODAY)
    assert card.card_type is CardType.RESIDENT
    assert card.name == "沈德顺"
    assert (card.gender, card.gender_code) == ("男", "1")
    assert (card.nation, card.nation_code) == ("汉", "01")
    assert card.birth_date == date(1949, 3, 12)
    assert card.address == "江苏省苏州市吴江区盛泽镇舜湖西路88号"
    assert card.id_number == "32050919490312001X"
    assert card.issuer == "苏州市公安局吴江分局"
    assert card.valid_from == date(2016, 5, 20)
    assert card.id_number_valid is True
    assert card.warnings == []


def test_long_term_validity_is_open_ended_not_a_fake_date() -> None:
    card = decode_text(load_card("resident-elderly").text_block(), today=TODAY)
    assert card.valid_to is None
    assert card.valid_long_term is True
    assert card.valid_on(date(2999, 1, 1)) is True
    assert card.valid_on(date(2016, 5, 19)) is False


def test_hk_macao_taiwan_permit_fields() -> None:
    card = decode_text(load_card("hk-macao-taiwan").text_block(), today=TODAY)
    assert card.card_type is CardType.HK_MACAO_TAIWAN
    assert card.name == "陈嘉欣"
    assert card.travel_permit_number == "H12345678"
    assert card.issue_count == 1
    assert card.id_number.startswith("810000")
    assert card.id_number_valid is True
    assert card.nation is None


def test_foreign_permanent_2017_fields() -> None:
    card = decode_text(load_card("foreign-permanent-2017").text_block(), today=TODAY)
    assert card.card_type is CardType.FOREIGN_PERMANENT_2017
    assert card.english_name == "SMITH, JOHN ALEXANDER"
    assert card.chinese_name == "史约翰"
    assert card.name == "史约翰"
    assert card.permanent_residence_number == "USA317506280125"
    assert card.id_number == card.permanent_residence_number
    assert card.nationality == "USA"
    assert card.birth_date == date(1975, 6, 28)
    assert card.card_version == "17"
    assert card.id_number_valid is True
    assert any("no check-character rule" in w for w in card.warnings)


def test_foreign_permanent_2023_common_part_and_raw_block() -> None:
    block = load_card("foreign-permanent-2023").text_block()
    card = decode_text(block, today=TODAY)
    assert card.card_type is CardType.FOREIGN_PERMANENT_2023
    assert card.chinese_name == "加西亚"
    assert card.english_name == "GARCIA, MARIA"
    assert card.nationality == "ESP"
    assert card.birth_date == date(1988, 9, 17)
    assert card.id_number_valid is True
    assert card.raw_text == block
    assert "raw_text" not in card.model_dump()


@pytest.mark.parametrize("sample", sample_names())
def test_every_sample_card_decodes_valid(sample: str) -> None:
    card = decode_text(load_card(sample).text_block(), today=TODAY)
    assert card.id_number_valid is True


def test_bad_dates_are_warned_about_never_dropped_silently() -> None:
    block = encode_text(CardType.RESIDENT, _resident(birth_date="19601301", valid_to="2030"))
    card = decode_text(block, today=TODAY)
    assert card.birth_date is None
    assert card.valid_to is None and card.valid_long_term is False
    assert "birth date is not a valid YYYYMMDD date" in card.warnings
    assert "valid-to date is not a valid YYYYMMDD date" in card.warnings


def test_expired_card_is_warned_about() -> None:
    block = encode_text(CardType.RESIDENT, _resident(valid_from="20000101", valid_to="20200101"))
    card = decode_text(block, today=TODAY)
    assert "card has expired" in card.warnings
    assert card.valid_on(TODAY) is False


def test_unknown_codes_are_warned_about() -> None:
    card = decode_text(encode_text(CardType.RESIDENT, _resident(gender="7", nation="77")),
                       today=TODAY)
    assert card.gender == "未知"
    assert card.nation is None
    assert "gender code is not one of 0, 1, 2, 9" in card.warnings
    assert "ethnic group code is not in GB 3304" in card.warnings


def test_wrong_check_character_makes_the_number_invalid_with_a_warning() -> None:
    number = with_check_character("33032419600101001")
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    card = decode_text(encode_text(CardType.RESIDENT, _resident(id_number=wrong)), today=TODAY)
    assert card.id_number_valid is False
    assert "ID number check character is wrong" in card.warnings
    assert all(wrong not in w for w in card.warnings)


def test_unknown_card_type_character_is_refused() -> None:
    block = bytearray(encode_text(CardType.RESIDENT, _resident()))
    block[248:250] = "Q".encode("utf-16-le")
    with pytest.raises(PayloadError, match="unrecognised card type"):
        decode_text(bytes(block))


def test_text_block_must_be_256_bytes() -> None:
    with pytest.raises(PayloadError):
        decode_text(b"\x20\x00" * 100)


def test_field_too_long_for_its_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_ucs2("很" * 16, 30)


def test_repr_and_str_mask_personal_data() -> None:
    card = decode_text(load_card("resident-elderly").text_block(), today=TODAY)
    for text in (repr(card), str(card), f"{card}"):
        assert "沈德顺" not in text
        assert "32050919490312001X" not in text
        assert "320509********001X" in text


def test_mask_name_keeps_only_ends() -> None:
    assert mask_name("沈德顺") == "沈*顺"
    assert mask_name("李明") == "李*"
    assert mask_name("欧阳建国") == "欧**国"


def test_card_model_is_immutable() -> None:
    card = decode_text(load_card("resident").text_block(), today=TODAY)
    with pytest.raises(ValueError):
        card.name = "x"  # type: ignore[misc]
    assert isinstance(card, IdCard)
