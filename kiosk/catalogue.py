"""What a kiosk offers: destination centres, their matters, and each matter's checklist of
materials (key or non-key, cards, proxy-only), read from a data file."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tongban.config import load_data_file
from tongban.errors import ConfigError

DEFAULT_CATALOGUE = Path(__file__).parent / "data" / "catalogue.toml"


class Material(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str
    key: bool = Field(description="no acceptance without it (non-key: 容缺受理 possible)")
    card: bool = Field(False, description="a card: front and back are captured as a pair")
    proxy_only: bool = Field(False, description="needed only when an agent applies")


class Matter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str
    centres: list[str]
    proxy: bool = False
    materials: list[Material]

    def checklist(self, *, by_proxy: bool) -> list[Material]:
        return [m for m in self.materials if by_proxy or not m.proxy_only]


class Centre(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str
    province: str


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    centres: list[Centre]
    matters: list[Matter]

    def matters_at(self, centre: str) -> list[Matter]:
        return [m for m in self.matters if centre in m.centres]

    def matter(self, code: str) -> Matter | None:
        return next((m for m in self.matters if m.code == code), None)

    def centre(self, code: str) -> Centre | None:
        return next((c for c in self.centres if c.code == code), None)


def load_catalogue(path: Path | None = None) -> Catalogue:
    path = path or DEFAULT_CATALOGUE
    catalogue = load_data_file(Catalogue, path)
    codes = {c.code for c in catalogue.centres}
    for matter in catalogue.matters:
        if not set(matter.centres) <= codes:
            raise ConfigError(f"config error in {path}: matter {matter.code} names an unknown "
                              "centre")
    return catalogue
