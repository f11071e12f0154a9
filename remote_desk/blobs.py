"""Material files at rest on the desk: content-addressed by the SHA-256 of the plaintext,
encrypted with AES-256-GCM under a key from configuration.

A blob file is ``nonce (12 bytes) || ciphertext+tag``; the SHA-256 is the associated data, so a
file renamed to another hash, or altered, fails to decrypt. Writing the same content twice
stores it once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class BlobError(Exception):
    """A blob is missing or does not decrypt (tampered, or the wrong key)."""

    exit_code = 50


def parse_key(text: str) -> bytes:
    """A 32-byte key from its base64 form (``tongban desk`` config: ``files_key``)."""
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("the files key is not base64") from None
    if len(key) != 32:
        raise ValueError("the files key must be 32 bytes (AES-256)")
    return key


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class BlobStore:
    """Encrypted, content-addressed files under one folder."""

    def __init__(self, root: Path, key: bytes) -> None:
        self.root = root
        self._aead = AESGCM(key)

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BlobError("not a SHA-256 hex digest")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its SHA-256 (hex). Idempotent."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, data, digest.encode())
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(sealed)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return digest

    def get(self, digest: str) -> bytes:
        """The plaintext of a stored blob, checked against its hash."""
        path = self._path(digest)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise BlobError("no such file in the store") from None
        try:
            data = self._aead.decrypt(sealed[:12], sealed[12:], digest.encode())
        except InvalidTag:
            raise BlobError("a stored file does not decrypt: tampered, or the wrong key") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobError("a stored file does not match its hash")
        return data

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()
