"""Who may connect: per-device Ed25519 keys, short-lived signed tokens, replays refused.

Each kiosk and each desk server holds a private key; the hub holds only public keys, in a
credentials file managed with ``tongban signaling credentials``. A token is
``base64url(claims).base64url(signature)`` with claims ``sub`` (the client id), ``kind``,
``aud``, ``iat``, ``exp`` and a random ``nonce``; it lives at most ``max_ttl`` seconds and is
accepted once (its nonce is remembered until it expires). A kiosk's credential names its site,
a desk's the centres it may serve.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from signaling.protocol import ClientKind

AUDIENCE = "tongban-hub"


class AuthError(Exception):
    """A refused connection; ``code`` goes to the client."""

    exit_code = 40

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Credential(BaseModel):
    """One registered client."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: ClientKind
    public_key: str = Field(description="raw Ed25519 public key, base64")
    site: str | None = Field(None, description="kiosks: the site whose ICE servers they use")
    centres: list[str] = Field(default_factory=list, description="desks: centres they serve")
    created_at: datetime
    revoked_at: datetime | None = None


class CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clients: dict[str, Credential] = Field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CredentialStore:
    """The credentials file, re-read when it changes (a revocation needs no restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._data = CredentialsFile()

    def _load(self) -> CredentialsFile:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._data, self._mtime = CredentialsFile(), None
            return self._data
        if mtime != self._mtime:
            self._data = CredentialsFile.model_validate_json(self.path.read_text("utf-8"))
            self._mtime = mtime
        return self._data

    def get(self, client_id: str) -> Credential | None:
        return self._load().clients.get(client_id)

    def all(self) -> list[Credential]:
        return sorted(self._load().clients.values(), key=lambda c: c.id)

    def _save(self, data: CredentialsFile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data.model_dump_json(indent=2), "utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        self._mtime = None

    def create(self, client_id: str, kind: ClientKind, *, site: str | None = None,
               centres: list[str] | None = None) -> Ed25519PrivateKey:
        """Register a new client; returns its private key (the hub keeps only the public)."""
        data = self._load().model_copy(deep=True)
        existing = data.clients.get(client_id)
        if existing is not None and existing.revoked_at is None:
            raise ValueError(f"client {client_id} already has a live credential; revoke it first")
        if kind is ClientKind.KIOSK and not site:
            raise ValueError("a kiosk credential needs its site")
        if kind is ClientKind.DESK and not centres:
            raise ValueError("a desk credential needs the centres it serves")
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        data.clients[client_id] = Credential(
            id=client_id, kind=kind, public_key=base64.b64encode(raw).decode(), site=site,
            centres=centres or [], created_at=datetime.now(UTC))
        self._save(data)
        return key

    def revoke(self, client_id: str) -> Credential:
        data = self._load().model_copy(deep=True)
        credential = data.clients.get(client_id)
        if credential is None:
            raise ValueError(f"no credential for {client_id}")
        data.clients[client_id] = credential.model_copy(update={"revoked_at": datetime.now(UTC)})
        self._save(data)
        return data.clients[client_id]


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def make_token(key: Ed25519PrivateKey, client_id: str, kind: ClientKind, *, ttl: int = 60,
               now: float | None = None) -> str:
    """A fresh token for one connection attempt."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": client_id, "kind": kind.value, "aud": AUDIENCE, "iat": issued,
              "exp": issued + ttl, "nonce": secrets.token_hex(16)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_b64(key.sign(body.encode()))}"


NonceCheck = Callable[[str, int], Awaitable[bool]]
"""Remember a nonce for that many seconds; False if it was already used."""


class TokenVerifier:
    """Checks tokens against the credential store."""

    def __init__(self, store: CredentialStore, *, max_ttl: int = 120, skew: int = 30) -> None:
        self.store = store
        self.max_ttl = max_ttl
        self.skew = skew

    async def verify(self, token: object, nonce_unused: NonceCheck,
                     now: float | None = None) -> Credential:
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 2048:
            raise AuthError("no_token", "a signed token is required")
        body, signature = token.split(".")
        try:
            claims = json.loads(_unb64(body))
            sig = _unb64(signature)
        except (ValueError, json.JSONDecodeError):
            raise AuthError("bad_token", "the token is malformed") from None
        if not isinstance(claims, dict):
            raise AuthError("bad_token", "the token is malformed")
        client_id = claims.get("sub")
        credential = self.store.get(client_id) if isinstance(client_id, str) else None
        if credential is None:
            raise AuthError("unknown_client", "no credential for this client")
        if credential.revoked_at is not None:
            raise AuthError("revoked", "this client's credential is revoked")
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(credential.public_key))
        try:
            public.verify(sig, body.encode())
        except InvalidSignature:
            raise AuthError("bad_signature", "the token's signature does not verify") from None
        current = time.time() if now is None else now
        iat, exp = claims.get("iat"), claims.get("exp")
        if claims.get("aud") != AUDIENCE or claims.get("kind") != credential.kind.value:
            raise AuthError("bad_token", "the token is not for this hub or this client kind")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > self.max_ttl:
            raise AuthError("bad_token", f"tokens live at most {self.max_ttl} s")
        if exp < current:
            raise AuthError("expired", "the token has expired")
        if iat > current + self.skew:
            raise AuthError("not_yet_valid", "the token is from the future (check the clock)")
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or len(nonce) < 16:
            raise AuthError("bad_token", "the token has no nonce")
        if not await nonce_unused(f"{client_id}:{nonce}", int(exp - current) + self.skew):
            raise AuthError("replayed", "this token was already used")
        return credential
