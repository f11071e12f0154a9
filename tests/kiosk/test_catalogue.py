"""The catalogue of centres, matters and materials, including the source article's examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.catalogue import load_catalogue
from tongban.errors import ConfigError


def test_the_source_articles_matters_are_offered() -> None:
    catalogue = load_catalogue()
    names = {m.name for m in catalogue.matters}
    assert {"异地长期居住人员备案", "异地购房提取住房公积金", "异地贷款缴存证明"} <= names
    backup = catalogue.matter("yb-ydjz-ba")
    assert backup is not None and backup.proxy
    assert [m.code for m in backup.checklist(by_proxy=True) if m.key] == [
        "id_card", "proxy_letter", "agent_id_card"]
    assert [m.code for m in catalogue.matters_at("wujiang")] == ["gjj-ydgf-tq", "gjj-jczm"]


def test_a_matter_naming_an_unknown_centre_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text('[[centres]]\ncode = "a"\nname = "A"\nprovince = "p"\n'
                   '[[matters]]\ncode = "m"\nname = "M"\ncentres = ["b"]\nmaterials = []\n')
    with pytest.raises(ConfigError, match="unknown centre"):
        load_catalogue(bad)
