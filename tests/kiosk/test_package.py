"""The kiosk's case package and its config: what is signed verifies at the desk, the identity
record has the shape the clerk's page renders, and a bad config is refused by name."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.config import KioskSection, load_kiosk_config
from kiosk.package import CapturedFile, build_package, identity_document
from remote_desk.package import PackageError, verify
from tongban.errors import ConfigError

JPEG = b"\xff\xd8\xff\xe0" + b"page" * 50


def test_identity_document_is_what_the_desk_page_renders() -> None:
    card = {"card_type": "resident", "name": "沈德顺", "id_number": "32050919490312001X"}
    verification = {"decision": "match", "distance": 0.31, "threshold": 0.47,
                    "liveness": {"passed": True, "simulated": True, "steps": []}}
    doc = json.loads(identity_document(card, verification, agent=True, simulated=True))
    assert doc["card"] == card and doc["verification"] == verification
    assert doc["agent"] is True and doc["represented"] == ["沈德顺"] and doc["simulated"]
    alone = json.loads(identity_document(card, verification, agent=False, simulated=False))
    assert alone["represented"] == [] and alone["simulated"] is False


def test_a_signed_package_verifies_and_a_changed_byte_does_not() -> None:
    key = Ed25519PrivateKey.generate()
    files = [CapturedFile("identity.json", b'{"card": {}}', "application/json"),
             CapturedFile("id_card-1.jpg", JPEG, "image/jpeg", "id_card")]
    package = build_package(case_id="case-abcdefgh", kiosk_id="kiosk-1", centre="yongjia",
                            matter="gjj-jczm", files=files, key=key, simulated=True)
    blobs = {name: data for name, (data, _) in package.files.items()}
    manifest = verify(package.manifest_json, package.signature, key.public_key(), blobs,
                      kiosk_id="kiosk-1")
    assert manifest.case_id == "case-abcdefgh" and manifest.supplement == 0
    assert {f.material for f in manifest.files} == {None, "id_card"}
    tampered = {**blobs, "id_card-1.jpg": JPEG[:-1] + b"X"}
    with pytest.raises(PackageError):
        verify(package.manifest_json, package.signature, key.public_key(), tampered,
               kiosk_id="kiosk-1")
    with pytest.raises(PackageError):
        verify(package.manifest_json, base64.b64encode(b"0" * 64).decode(), key.public_key(),
               blobs, kiosk_id="kiosk-1")


def test_a_supplement_has_its_own_spool_name_and_number() -> None:
    key = Ed25519PrivateKey.generate()
    package = build_package(case_id="case-abcdefgh", kiosk_id="kiosk-1", centre="yongjia",
                            matter="gjj-jczm", key=key, simulated=False, supplement=2,
                            files=[CapturedFile("id_card-r2.jpg", JPEG, "image/jpeg",
                                                "id_card")])
    assert package.case_id == "case-abcdefgh-s2"
    assert json.loads(package.manifest_json)["supplement"] == 2
    with pytest.raises(ValueError, match="share a name"):
        build_package(case_id="case-abcdefgh", kiosk_id="kiosk-1", centre="yongjia",
                      matter="gjj-jczm", key=key, simulated=False,
                      files=[CapturedFile("a.jpg", JPEG), CapturedFile("a.jpg", JPEG)])


def test_kiosk_config_refuses_a_public_touch_screen(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('[kiosk]\nscreen_host = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"kiosk\.screen_host"):
        load_kiosk_config(config)
    section = KioskSection(desk_url="https://desk", desks={"wujiang": "https://wj"})
    assert section.desk_for("wujiang") == "https://wj"
    assert section.desk_for("yongjia") == "https://desk"


def _tongban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tongban", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_kiosk_run_help_check_and_one_line_errors(tmp_path: Path) -> None:
    assert "touch screen" in _tongban("kiosk", "run", "--help").stdout
    config = tmp_path / "kiosk.toml"
    config.write_text('[kiosk]\nhub_url = "https://hub:8765"\ndesk_url = "https://desk"\n')
    missing = _tongban("kiosk", "run", "--config", str(config), "--check")
    assert missing.returncode == 3
    assert missing.stderr.strip().count("\n") == 0 and "idcard.port" in missing.stderr
    key = tmp_path / "key.pem"
    key.write_text("placeholder")
    config.write_text(config.read_text() + f'key_file = "{key}"\n[idcard]\nport = "/dev/ttyUSB0"\n')
    ok = _tongban("kiosk", "run", "--config", str(config), "--check", "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] and data["idcard_port"] == "/dev/ttyUSB0"
    assert data["screen"] == "http://127.0.0.1:8700/"
