"""Signed case packages: what verifies, and every way one is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remote_desk.package import Manifest, PackageError, describe_file, sign, verify

JPEG = b"\xff\xd8\xff\xe0" + b"page" * 50
PDF = b"%PDF-1.4 letter"
IDENTITY = b'{"decision": "match"}'


def _package(key: Ed25519PrivateKey, **changes: object) -> tuple[bytes, str, dict[str, bytes]]:
    files = {"page-1.jpg": JPEG, "letter.pdf": PDF, "identity.json": IDENTITY}
    manifest = Manifest(
        case_id="case-0001", kiosk_id="shengze-01", centre="yongjia", matter="yb-ydjz-ba",
        created_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
        files=[describe_file("page-1.jpg", JPEG, "image/jpeg", "id_copy"),
               describe_file("letter.pdf", PDF, "application/pdf", "proxy_letter"),
               describe_file("identity.json", IDENTITY, "application/json")])
    manifest = manifest.model_copy(update=changes) if changes else manifest
    return manifest.model_dump_json().encode(), sign(manifest, key), files


def test_a_signed_package_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    manifest_json, signature, files = _package(key)
    manifest = verify(manifest_json, signature, key.public_key(), files, kiosk_id="shengze-01")
    assert [f.material for f in manifest.files] == ["id_copy", "proxy_letter", None]


@pytest.mark.parametrize("attack", ["unsigned", "other_key", "edited_manifest", "changed_file",
                                    "extra_file", "missing_file", "wrong_kiosk", "fake_jpeg"])
def test_tampered_or_unsigned_packages_are_refused(attack: str) -> None:
    key = Ed25519PrivateKey.generate()
    manifest_json, signature, files = _package(key)
    public = key.public_key()
    kiosk = "shengze-01"
    if attack == "unsigned":
        signature = ""
    elif attack == "other_key":
        signature = sign(Manifest.model_validate_json(manifest_json),
                         Ed25519PrivateKey.generate())
    elif attack == "edited_manifest":
        manifest_json = manifest_json.replace(b"yongjia", b"wujiang")
    elif attack == "changed_file":
        files["letter.pdf"] = b"%PDF-1.4 forged"
    elif attack == "extra_file":
        files["extra.jpg"] = JPEG
    elif attack == "missing_file":
        del files["identity.json"]
    elif attack == "wrong_kiosk":
        kiosk = "another-kiosk"
    else:
        fake = b"MZ not a jpeg"
        key2 = Ed25519PrivateKey.generate()
        manifest = Manifest.model_validate_json(manifest_json)
        manifest = manifest.model_copy(update={"files": [
            describe_file("page-1.jpg", fake, "image/jpeg"), *manifest.files[1:]]})
        manifest_json, signature, public = (manifest.model_dump_json().encode(),
                                            sign(manifest, key2), key2.public_key())
        files["page-1.jpg"] = fake
    with pytest.raises(PackageError) as err:
        verify(manifest_json, signature, public, files, kiosk_id=kiosk)
    assert err.value.code in {"bad_signature", "hash_mismatch", "files_mismatch",
                              "wrong_kiosk", "bad_type"}


def test_malformed_manifests_name_the_field() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(PackageError, match="manifest files"):
        verify(b'{"v": 1, "case_id": "case-0001", "kiosk_id": "k1", "centre": "c", '
               b'"matter": "m", "created_at": "2026-11-26T10:00:00Z", "files": []}',
               "", key.public_key(), {}, kiosk_id="k1")
    with pytest.raises(PackageError, match=r"^manifest"):
        verify(b"not json", "", key.public_key(), {}, kiosk_id="k1")
