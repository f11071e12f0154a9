"""The case package a kiosk uploads: a manifest listing every file with its SHA-256, signed
with the kiosk's Ed25519 key, and the files themselves. The kiosk signs with ``sign``; the
desk checks with ``verify`` before it stores anything: signature, every hash and size, allowed
types and limits. Anything that does not verify is refused whole.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

ALLOWED_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG", "application/pdf":
                 b"%PDF", "application/json": b""}
"""Content types a package may carry, with the bytes each must start with."""
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_PACKAGE_BYTES = 200 * 1024 * 1024
MAX_FILES = 200

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PackageError(Exception):
    """A package that is refused; ``code`` goes back to the kiosk."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    material: str | None = Field(None, max_length=64)
    content_type: Literal["image/jpeg", "image/png", "application/pdf", "application/json"]
    size: int = Field(ge=1, le=MAX_FILE_BYTES)
    sha256: Hex64


class Manifest(BaseModel):
    """What the kiosk signs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    case_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    kiosk_id: str = Field(min_length=2, max_length=64)
    centre: str = Field(min_length=1, max_length=64)
    matter: str = Field(min_length=1, max_length=64)
    created_at: datetime
    files: list[ManifestFile] = Field(min_length=1, max_length=MAX_FILES)
    simulated: bool = False
    supplement: int = Field(0, ge=0, le=99, description="0: the case; n: the n-th addition "
                                                          "(a re-scan or full-resolution page)")

    def canonical(self) -> bytes:
        """The exact bytes that are signed: sorted keys, no spaces, UTF-8."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode()


def describe_file(name: str, data: bytes, content_type: str,
                  material: str | None = None) -> ManifestFile:
    return ManifestFile(name=name, material=material, content_type=content_type,
                        size=len(data), sha256=hashlib.sha256(data).hexdigest())


def sign(manifest: Manifest, key: Ed25519PrivateKey) -> str:
    """The base64 signature of the manifest's canonical bytes."""
    return base64.b64encode(key.sign(manifest.canonical())).decode()


def verify(manifest_json: bytes, signature: str, public_key: Ed25519PublicKey,
           files: Mapping[str, bytes], *, kiosk_id: str) -> Manifest:
    """Check a received package; returns its manifest, or raises ``PackageError``."""
    try:
        manifest = Manifest.model_validate_json(manifest_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise PackageError("bad_manifest", f"manifest {where}: {first['msg']}") from None
    try:
        public_key.verify(base64.b64decode(signature, validate=True), manifest.canonical())
    except (InvalidSignature, ValueError):
        raise PackageError("bad_signature", "the manifest's signature does not verify") from None
    if manifest.kiosk_id != kiosk_id:
        raise PackageError("wrong_kiosk", "the manifest names another kiosk")
    names = [f.name for f in manifest.files]
    if len(set(names)) != len(names):
        raise PackageError("bad_manifest", "a file name appears twice")
    if set(files) != set(names):
        missing, extra = set(names) - set(files), set(files) - set(names)
        raise PackageError("files_mismatch", f"{len(missing)} listed file(s) missing, "
                                             f"{len(extra)} unlisted file(s) sent")
    if sum(len(d) for d in files.values()) > MAX_PACKAGE_BYTES:
        raise PackageError("too_large", f"packages are limited to {MAX_PACKAGE_BYTES} bytes")
    for entry in manifest.files:
        data = files[entry.name]
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise PackageError("hash_mismatch", f"{entry.name} does not match its manifest")
        magic = ALLOWED_TYPES[entry.content_type]
        if magic and not data.startswith(magic):
            raise PackageError("bad_type", f"{entry.name} is not {entry.content_type}")
        if entry.content_type == "application/json":
            try:
                json.loads(data)
            except ValueError:
                raise PackageError("bad_type", f"{entry.name} is not JSON") from None
    return manifest
