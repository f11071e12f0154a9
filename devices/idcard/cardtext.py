"""The 256-byte text block: UCS-2 LE fields at fixed offsets, one layout per card type.

The type is the character at offset 248: space = resident ID card, ``J`` = Hong Kong/Macao/
Taiwan residence permit, ``I`` = foreign permanent resident card (2017), ``Y`` = the same (2023;
only its common part is decoded, the raw block is kept). Each layout below is used both to
decode a card and, in the simulator, to encode one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from devices.idcard import idnumber
from devices.idcard.codes import GENDERS, NATIONS
from devices.idcard.errors import PayloadError

TEXT_LEN = 256
TYPE_OFFSET = 248
LONG_TERM = "长期"


class CardType(StrEnum):
    """The four card kinds a GA 467 reader returns."""

    RESIDENT = "resident"
    HK_MACAO_TAIWAN = "hk_macao_taiwan"
    FOREIGN_PERMANENT_2017 = "foreign_permanent_2017"
    FOREIGN_PERMANENT_2023 = "foreign_permanent_2023"

    @property
    def type_char(self) -> str:
        """The character at text offset 248."""
        return TYPE_CHARS[self]


TYPE_CHARS: dict[CardType, str] = {
    CardType.RESIDENT: " ",
    CardType.HK_MACAO_TAIWAN: "J",
    CardType.FOREIGN_PERMANENT_2017: "I",
    CardType.FOREIGN_PERMANENT_2023: "Y",
}
_BY_CHAR = {c: t for t, c in TYPE_CHARS.items()}


@dataclass(frozen=True)
class TextField:
    """One field of a text layout."""

    name: str
    offset: int
    length: int


def _layout(*fields: tuple[str, int, int]) -> tuple[TextField, ...]:
    return tuple(TextField(*f) for f in fields)


LAYOUTS: dict[CardType, tuple[TextField, ...]] = {
    CardType.RESIDENT: _layout(
        ("name", 0, 30), ("gender", 30, 2), ("nation", 32, 4), ("birth_date", 36, 16),
        ("address", 52, 70), ("id_number", 122, 36), ("issuer", 158, 30),
        ("valid_from", 188, 16), ("valid_to", 204, 16),
    ),
    CardType.HK_MACAO_TAIWAN: _layout(
        ("name", 0, 30), ("gender", 30, 2), ("birth_date", 36, 16), ("address", 52, 70),
        ("id_number", 122, 36), ("issuer", 158, 30), ("valid_from", 188, 16),
        ("valid_to", 204, 16), ("travel_permit_number", 220, 18), ("issue_count", 238, 4),
    ),
    CardType.FOREIGN_PERMANENT_2017: _layout(
        ("english_name", 0, 120), ("gender", 120, 2), ("permanent_residence_number", 122, 30),
        ("nationality", 152, 6), ("chinese_name", 158, 30), ("valid_from", 188, 16),
        ("valid_to", 204, 16), ("birth_date", 220, 16), ("card_version", 236, 4),
        ("authority_code", 240, 8),
    ),
    CardType.FOREIGN_PERMANENT_2023: _layout(
        ("chinese_name", 0, 30), ("gender", 30, 2), ("birth_date", 36, 16),
        ("english_name", 52, 70), ("id_number", 122, 36), ("valid_from", 188, 16),
        ("valid_to", 204, 16), ("nationality", 242, 6),
    ),
}


def decode_ucs2(raw: bytes) -> str:
    """UCS-2 LE text with its space (and NUL) padding removed."""
    return raw.decode("utf-16-le", errors="replace").rstrip(" \x00")


def encode_ucs2(text: str, length: int) -> bytes:
    """UCS-2 LE text right-padded with spaces to ``length`` bytes."""
    raw = text.encode("utf-16-le")
    if len(raw) > length:
        raise ValueError(f"text of {len(text)} characters does not fit {length} bytes")
    return raw + " ".encode("utf-16-le") * ((length - len(raw)) // 2)


class IdCard(BaseModel):
    """A decoded card. ``repr`` masks personal data so that it cannot leak into logs."""

    model_config = ConfigDict(frozen=True)

    card_type: CardType
    name: str = Field(description="Chinese name; for a 2017 foreign card without one, the "
                                  "English name")
    gender: str
    gender_code: str
    nation: str | None = None
    nation_code: str | None = None
    birth_date: date | None = None
    address: str | None = None
    id_number: str
    issuer: str | None = None
    valid_from: date | None = None
    valid_to: date | None = Field(None, description="None with valid_long_term = 长期")
    valid_long_term: bool = False
    id_number_valid: bool
    warnings: list[str] = Field(default_factory=list)
    travel_permit_number: str | None = None
    issue_count: int | None = None
    english_name: str | None = None
    chinese_name: str | None = None
    permanent_residence_number: str | None = None
    nationality: str | None = None
    card_version: str | None = None
    authority_code: str | None = None
    raw_text: bytes = Field(b"", repr=False, exclude=True,
                            description="the whole 256-byte text block (the 2023 card's "
                                        "undecoded part lives here)")

    def __repr__(self) -> str:
        return (f"IdCard(card_type={self.card_type.value!r}, name={mask_name(self.name)!r}, "
                f"id_number={idnumber.mask(self.id_number)!r})")

    __str__ = __repr__

    def valid_on(self, day: date) -> bool | None:
        """Whether the card is within its validity period on ``day`` (None if unknown)."""
        if self.valid_from is None or (self.valid_to is None and not self.valid_long_term):
            return None
        return self.valid_from <= day and (self.valid_long_term or day <= (self.valid_to or day))


def mask_name(name: str) -> str:
    """Keep a name's first character (and last, for three or more characters)."""
    if len(name) <= 1:
        return "*" * len(name)
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def _parse_date(value: str, label: str, warnings: list[str]) -> date | None:
    if not value:
        warnings.append(f"{label} is empty")
        return None
    if len(value) == 8 and value.isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            pass
    warnings.append(f"{label} is not a valid YYYYMMDD date")
    return None


def card_type_of(block: bytes) -> CardType:
    """The card type from the character at offset 248."""
    if len(block) != TEXT_LEN:
        raise PayloadError(f"text block has {len(block)} bytes, expected {TEXT_LEN}")
    char = block[TYPE_OFFSET:TYPE_OFFSET + 2].decode("utf-16-le", errors="replace")
    kind = _BY_CHAR.get(char) or (CardType.RESIDENT if char == "\x00" else None)
    if kind is None:
        raise PayloadError(f"unrecognised card type character U+{ord(char):04X} at offset 248")
    return kind


def decode_text(block: bytes, *, today: date | None = None) -> IdCard:
    """Decode a 256-byte text block into an ``IdCard`` with checks and warnings."""
    kind = card_type_of(block)
    raw = {f.name: decode_ucs2(block[f.offset:f.offset + f.length]) for f in LAYOUTS[kind]}
    warnings: list[str] = []
    today = today or date.today()

    gender_code = raw["gender"]
    gender = GENDERS.get(gender_code)
    if gender is None:
        warnings.append("gender code is not one of 0, 1, 2, 9")
        gender = "未知"
    values: dict[str, Any] = {"card_type": kind, "gender": gender, "gender_code": gender_code,
                              "raw_text": bytes(block)}

    birth = _parse_date(raw["birth_date"], "birth date", warnings)
    valid_from = _parse_date(raw["valid_from"], "valid-from date", warnings)
    long_term = raw["valid_to"] == LONG_TERM
    valid_to = None if long_term else _parse_date(raw["valid_to"], "valid-to date", warnings)
    values.update(birth_date=birth, valid_from=valid_from, valid_to=valid_to,
                  valid_long_term=long_term)
    if valid_from and valid_to and valid_to < valid_from:
        warnings.append("valid-to date is before valid-from date")
    if valid_to and valid_to < today:
        warnings.append("card has expired")
    if valid_from and valid_from > today:
        warnings.append("card is not valid yet")

    if kind is CardType.RESIDENT:
        nation_code = raw["nation"]
        nation = NATIONS.get(nation_code)
        if nation is None:
            warnings.append("ethnic group code is not in GB 3304")
        values.update(name=raw["name"], nation=nation, nation_code=nation_code,
                      address=raw["address"], id_number=raw["id_number"], issuer=raw["issuer"])
    elif kind is CardType.HK_MACAO_TAIWAN:
        count: int | None = None
        if raw["issue_count"].isdigit():
            count = int(raw["issue_count"])
        else:
            warnings.append("issue count is not a number")
        values.update(name=raw["name"], address=raw["address"], id_number=raw["id_number"],
                      issuer=raw["issuer"], travel_permit_number=raw["travel_permit_number"],
                      issue_count=count)
    elif kind is CardType.FOREIGN_PERMANENT_2017:
        values.update(name=raw["chinese_name"] or raw["english_name"],
                      english_name=raw["english_name"], chinese_name=raw["chinese_name"] or None,
                      permanent_residence_number=raw["permanent_residence_number"],
                      id_number=raw["permanent_residence_number"],
                      nationality=raw["nationality"], card_version=raw["card_version"],
                      authority_code=raw["authority_code"])
    else:
        values.update(name=raw["chinese_name"] or raw["english_name"],
                      chinese_name=raw["chinese_name"] or None, english_name=raw["english_name"],
                      id_number=raw["id_number"], permanent_residence_number=raw["id_number"],
                      nationality=raw["nationality"])
        warnings.append("2023 foreign permanent resident card: only the common fields are "
                        "decoded, the raw text block is kept")

    check = idnumber.check(values["id_number"], kind=kind.value, birth_date=birth,
                           gender_code=gender_code, nationality=values.get("nationality"))
    values.update(id_number_valid=check.valid, warnings=warnings + check.warnings)
    return IdCard(**values)


def encode_text(kind: CardType, fields: dict[str, str]) -> bytes:
    """Lay out raw field strings for a card type into a 256-byte text block."""
    layout = {f.name: f for f in LAYOUTS[kind]}
    unknown = set(fields) - set(layout)
    if unknown:
        raise ValueError(f"fields not in the {kind.value} layout: {', '.join(sorted(unknown))}")
    block = bytearray(encode_ucs2("", TEXT_LEN))
    for name, value in fields.items():
        f = layout[name]
        block[f.offset:f.offset + f.length] = encode_ucs2(value, f.length)
    block[TYPE_OFFSET:TYPE_OFFSET + 2] = kind.type_char.encode("utf-16-le")
    return bytes(block)
