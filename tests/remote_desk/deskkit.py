"""A desk on a real HTTP server for tests: kiosk credentials, clerks, signed packages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from remote_desk.app import DeskApp
from remote_desk.blobs import new_key, parse_key
from remote_desk.config import DeskConfig
from remote_desk.package import Manifest, describe_file, sign
from remote_desk.users import Role, add_user
from signaling.auth import CredentialStore
from signaling.protocol import ClientKind

PASSWORD = "correct horse battery"
JPEG = b"\xff\xd8\xff\xe0" + b"scan" * 100
PDF = b"%PDF-1.4 proxy authorisation letter"


@dataclass
class Desk:
    url: str
    app: DeskApp
    kiosk_key: Ed25519PrivateKey


async def make_desk(tmp_path: Path, db_url: str, centres: tuple[str, ...] = ("yongjia",),
                    engine: AsyncEngine | None = None, kiosk_credentials: Path | None = None,
                    **config: Any) -> tuple[DeskApp, TestServer, Ed25519PrivateKey | None]:
    """A desk serving ``centres`` with clerk-yj (yongjia), clerk-wj (wujiang) and an auditor
    (yongjia), and its own kiosk shengze-01 (whose key it returns), unless it shares
    ``kiosk_credentials`` with another desk."""
    key = None
    if kiosk_credentials is None:
        kiosk_credentials = tmp_path / "creds.json"
        key = CredentialStore(kiosk_credentials).create("shengze-01", ClientKind.KIOSK,
                                                        site="shengze")
    desk = DeskApp(DeskConfig(database=db_url, files_dir=tmp_path / "files",
                              kiosk_credentials=kiosk_credentials, centres=list(centres),
                              **config), files_key=parse_key(new_key()), engine=engine)
    async with desk.db() as db:
        await add_user(db, "clerk-yj", "永嘉窗口", PASSWORD, Role.CLERK, ["yongjia"])
        await add_user(db, "clerk-wj", "吴江窗口", PASSWORD, Role.CLERK, ["wujiang"])
        await add_user(db, "auditor", "审计", PASSWORD, Role.AUDITOR, ["yongjia"])
        await db.commit()
    server = TestServer(desk.app, host="127.0.0.1")
    await server.start_server()
    return desk, server, key


async def login(desk: Desk, user: str, password: str = PASSWORD
                ) -> tuple[aiohttp.ClientSession, dict[str, Any]]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(f"{desk.url}/api/login",
                            json={"username": user, "password": password}) as r:
        body = await r.json()
        if r.status != 200:
            await session.close()
            raise AssertionError(body)
    return session, body


def page(name: str) -> bytes:
    """A JPEG page of its own bytes."""
    return JPEG + name.encode()


def package(key: Ed25519PrivateKey, case_id: str = "case-0001", centre: str = "yongjia",
            pdf: bytes = PDF, kiosk: str = "shengze-01", extra: tuple[str, ...] = (),
            created_at: datetime | None = None) -> aiohttp.FormData:
    """The case's package: an ID copy and the proxy letter, and ``extra`` pages (the same
    ``created_at`` makes the same package: a retry)."""
    pages = {"page-1.jpg": JPEG, **{name: page(name) for name in extra}}
    manifest = Manifest(case_id=case_id, kiosk_id=kiosk, centre=centre,
                        matter="yb-ydjz-ba", created_at=created_at or datetime.now(UTC),
                        files=[*(describe_file(name, data, "image/jpeg", "id_copy")
                                 for name, data in pages.items()),
                               describe_file("letter.pdf", pdf, "application/pdf",
                                             "proxy_letter")])
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.model_dump_json(), content_type="application/json")
    form.add_field("signature", sign(manifest, key))
    for name, data in pages.items():
        form.add_field("file", data, filename=name, content_type="image/jpeg")
    form.add_field("file", PDF, filename="letter.pdf", content_type="application/pdf")
    return form


def supplement(key: Ed25519PrivateKey, n: int, name: str, data: bytes = JPEG,
               case_id: str = "case-0001", kiosk: str = "shengze-01",
               centre: str = "yongjia") -> aiohttp.FormData:
    """The n-th addition to a case: one page (a re-scan, a full-resolution capture)."""
    manifest = Manifest(case_id=case_id, kiosk_id=kiosk, centre=centre,
                        matter="yb-ydjz-ba", created_at=datetime.now(UTC), supplement=n,
                        files=[describe_file(name, data, "image/jpeg", "id_copy")])
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.model_dump_json(), content_type="application/json")
    form.add_field("signature", sign(manifest, key))
    form.add_field("file", data, filename=name, content_type="image/jpeg")
    return form


async def upload(desk: Desk, form: aiohttp.FormData, kiosk: str = "shengze-01") -> tuple[
        int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(
            f"{desk.url}/api/intake", data=form, headers={"X-Tongban-Kiosk": kiosk}) as r:
        return r.status, await r.json()
