"""Simulated cards: a JSON description of a card's raw fields, and the sample cards that ship.

The samples are fictional people with valid check characters, one per card type. A card file
lists the raw text fields by their layout names (see ``cardtext.LAYOUTS``), so a test can also
describe a deliberately broken card.
"""

from __future__ import annotations

import json
import zlib
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.idcard.cardtext import CardType, encode_text
from devices.idcard.payloads import FINGERPRINT_TEMPLATE_LEN
from devices.idcard.photo import encode_simulated, placeholder_portrait

SAMPLES_PACKAGE = "devices.idcard.samples"


class SimulatedFingerprint(BaseModel):
    """One enrolled finger of a simulated card."""

    model_config = ConfigDict(extra="forbid")

    finger: int = Field(11, description="finger position code (11-20, 97-99)")
    quality: int = Field(80, ge=0, le=255)


class SimulatedCard(BaseModel):
    """A card the virtual reader holds."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field("", description="what this card is for (not sent by the reader)")
    card_type: CardType
    fields: dict[str, str]
    photo: str | None = Field(None, description="image file (relative to the card file) for the "
                                                "photo; None draws a placeholder figure")
    fingerprints: list[SimulatedFingerprint] = Field(default_factory=list, max_length=2)
    newest_address: str | None = None
    source_dir: Path | None = Field(None, exclude=True)

    def text_block(self) -> bytes:
        return encode_text(self.card_type, self.fields)

    def photo_block(self) -> bytes:
        """The 1024-byte photo block: the simulator's labelled stand-in for WLT."""
        image: np.ndarray | None
        if self.photo is None:
            image = placeholder_portrait(self.card_type.value + "".join(self.fields.values()))
        else:
            path = Path(self.photo)
            if not path.is_absolute() and self.source_dir is not None:
                path = self.source_dir / path
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"card photo {path} is not a readable image")
        return encode_simulated(image)

    def fingerprint_block(self) -> bytes:
        """0, 512 or 1024 bytes of templates (the rest of each template is filler)."""
        out = bytearray()
        for i, fp in enumerate(self.fingerprints):
            rng = np.random.default_rng(zlib.crc32(f"{i}{fp.finger}".encode()))
            template = bytearray(rng.integers(0, 256, FINGERPRINT_TEMPLATE_LEN, np.uint8))
            template[4] = 1
            template[5] = fp.finger
            template[6] = fp.quality
            out += template
        return bytes(out)


def sample_names() -> list[str]:
    """Names of the sample cards that ship with the package."""
    root = resources.files(SAMPLES_PACKAGE)
    return sorted(p.name.removesuffix(".json") for p in root.iterdir()
                  if p.name.endswith(".json"))


def load_card(spec: str) -> SimulatedCard:
    """A card from a file path, or from a sample's name (see ``sample_names``)."""
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        source_dir: Path | None = path.parent
    elif spec in sample_names():
        text = resources.files(SAMPLES_PACKAGE).joinpath(f"{spec}.json").read_text("utf-8")
        source_dir = None
    else:
        raise ValueError(f"no card file or sample named {spec!r} (samples: "
                         f"{', '.join(sample_names())})")
    try:
        card = SimulatedCard.model_validate({**json.loads(text), "source_dir": source_dir})
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise ValueError(f"card {spec}: {' '.join(first[:3])}") from None
    card.text_block()  # fail now on fields that do not fit the layout
    return card


