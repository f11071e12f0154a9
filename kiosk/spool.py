"""The kiosk's outgoing case packages: encrypted in a local spool until the desk acknowledges
them, uploaded over HTTPS with retries, then wiped.

The spool key lives only in this process's memory: a package that has not been delivered when
the kiosk stops cannot be read afterwards, and the spool is wiped at start. Delivery is exactly
once from the desk's side, which is idempotent by case id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext

import aiohttp
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = structlog.get_logger("kiosk.spool")


@dataclass(frozen=True)
class Package:
    case_id: str
    manifest_json: bytes
    signature: str
    files: dict[str, tuple[bytes, str]]
    """name -> (bytes, content type)."""


class Spool:
    """Encrypted files, one per case, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._aead = AESGCM(secrets.token_bytes(32))
        root.mkdir(parents=True, exist_ok=True)

    def wipe_all(self) -> int:
        """Remove everything (at kiosk start: the previous process's key is gone)."""
        count = 0
        for path in self.root.glob("*.pkg"):
            path.unlink(missing_ok=True)
            count += 1
        return count

    def _path(self, case_id: str) -> Path:
        if not case_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError("bad case id")
        return self.root / f"{case_id}.pkg"

    def put(self, package: Package) -> None:
        body = json.dumps({
            "case_id": package.case_id,
            "manifest": package.manifest_json.decode(),
            "signature": package.signature,
            "files": {n: [base64.b64encode(d).decode(), t]
                      for n, (d, t) in package.files.items()},
        }).encode()
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, body, package.case_id.encode())
        tmp = self._path(package.case_id).with_suffix(".tmp")
        tmp.write_bytes(sealed)
        tmp.chmod(0o600)
        tmp.replace(self._path(package.case_id))

    def get(self, case_id: str) -> Package:
        sealed = self._path(case_id).read_bytes()
        try:
            body = json.loads(self._aead.decrypt(sealed[:12], sealed[12:], case_id.encode()))
        except InvalidTag:
            raise ValueError("spooled package does not decrypt (written by another run)") from None
        return Package(body["case_id"], body["manifest"].encode(), body["signature"],
                       {n: (base64.b64decode(d), t) for n, (d, t) in body["files"].items()})

    def remove(self, case_id: str) -> None:
        self._path(case_id).unlink(missing_ok=True)

    def pending(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.pkg"))


class DeliveryRefused(Exception):
    """The desk refused the package (it will not be retried)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"desk refused the package: {status} {code}")
        self.status = status
        self.code = code


async def deliver(spool: Spool, case_id: str, url: str, kiosk_id: str, *,
                  attempts: int = 8, first_delay: float = 0.5, max_delay: float = 15.0,
                  timeout: float = 30.0, ssl: SSLContext | bool = True) -> str:
    """Upload one spooled package until the desk acknowledges it; then wipe it.

    Returns "stored" or "already" (a retry whose first attempt had arrived). Network failures
    and 5xx answers are retried with exponential back-off; a 4xx refusal is final.
    """
    delay = first_delay
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        package = spool.get(case_id)
        form = aiohttp.FormData()
        form.add_field("manifest", package.manifest_json.decode(),
                       content_type="application/json")
        form.add_field("signature", package.signature)
        for name, (data, content_type) in package.files.items():
            form.add_field("file", data, filename=name, content_type=content_type)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                    s.post(f"{url.rstrip('/')}/api/intake", data=form, ssl=ssl,
                           headers={"X-Tongban-Kiosk": kiosk_id}) as r:
                body = await r.json(content_type=None)
                if r.status in (200, 201):
                    spool.remove(case_id)
                    log.info("kiosk.package_delivered", case=case_id, attempt=attempt)
                    return str(body.get("status", "stored"))
                if 400 <= r.status < 500:
                    raise DeliveryRefused(r.status, str(body.get("error", "refused")))
                last = RuntimeError(f"desk answered {r.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            last = exc
        log.warning("kiosk.upload_retry", case=case_id, attempt=attempt,
                    error=type(last).__name__)
        await asyncio.sleep(delay)
        delay = min(max_delay, delay * 2)
    raise TimeoutError(f"package not delivered after {attempts} attempts: {last}")
