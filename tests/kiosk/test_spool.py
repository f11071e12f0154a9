"""The spool: encrypted until acknowledged, retried while the desk is unreachable, delivered
exactly once, wiped afterwards and at start."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from kiosk.spool import DeliveryRefused, Package, Spool, deliver
from remote_desk.app import DeskApp
from remote_desk.blobs import new_key, parse_key
from remote_desk.config import DeskConfig
from remote_desk.db import upgrade
from remote_desk.models import Case
from remote_desk.package import Manifest, describe_file, sign
from signaling.auth import CredentialStore
from signaling.protocol import ClientKind

JPEG = b"\xff\xd8\xff\xe0" + b"page" * 64


def _package(key: object, case_id: str = "case-0001") -> Package:
    manifest = Manifest(case_id=case_id, kiosk_id="k1", centre="yongjia", matter="m",
                        created_at=datetime(2026, 11, 26, tzinfo=UTC),
                        files=[describe_file("page-1.jpg", JPEG, "image/jpeg", "id_copy")])
    return Package(case_id, manifest.model_dump_json().encode(),
                   sign(manifest, key), {"page-1.jpg": (JPEG, "image/jpeg")})  # type: ignore[arg-type]


def test_spooled_packages_are_encrypted_and_die_with_the_process(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    spool = Spool(tmp_path)
    spool.put(_package(Ed25519PrivateKey.generate()))
    raw = (tmp_path / "case-0001.pkg").read_bytes()
    assert b"page" not in raw and b"case-0001" not in raw[12:]
    assert spool.get("case-0001").files["page-1.jpg"][0] == JPEG
    restarted = Spool(tmp_path)  # a new process: a new key
    with pytest.raises(ValueError, match="does not decrypt"):
        restarted.get("case-0001")
    assert restarted.wipe_all() == 1 and restarted.pending() == []


async def test_unreachable_desk_then_delivered_exactly_once(tmp_path: Path) -> None:
    creds = CredentialStore(tmp_path / "creds.json")
    key = creds.create("k1", ClientKind.KIOSK, site="s1")
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    await asyncio.to_thread(upgrade, url)
    desk = DeskApp(DeskConfig(database=url, files_dir=tmp_path / "files", centres=["yongjia"],
                              kiosk_credentials=tmp_path / "creds.json"),
                   files_key=parse_key(new_key()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spool = Spool(tmp_path / "spool")
    spool.put(_package(key))
    task = asyncio.create_task(deliver(spool, "case-0001", f"http://127.0.0.1:{port}", "k1",
                                       first_delay=0.2, max_delay=0.4, attempts=30))
    await asyncio.sleep(1.0)  # the desk is down: attempts fail, the package waits
    assert not task.done() and spool.pending() == ["case-0001"]
    server = TestServer(desk.app, host="127.0.0.1", port=port)
    await server.start_server()
    assert await asyncio.wait_for(task, 20) == "stored"
    assert spool.pending() == []  # wiped once acknowledged
    spool.put(_package(key))  # the kiosk retries after a lost acknowledgement
    assert await deliver(spool, "case-0001", f"http://127.0.0.1:{port}", "k1") == "already"
    async with desk.db() as db:
        assert (await db.execute(select(func.count()).select_from(Case))).scalar_one() == 1
    forged = _package(creds.create("k2", ClientKind.KIOSK, site="s1"), case_id="case-0002")
    spool.put(forged)
    with pytest.raises(DeliveryRefused) as err:
        await deliver(spool, "case-0002", f"http://127.0.0.1:{port}", "k1")
    assert err.value.code == "bad_signature"
    await server.close()


async def test_delivery_speaks_https_and_trusts_only_the_configured_ca(tmp_path: Path) -> None:
    import ssl

    from tests.tls import self_signed

    cert, key_file = self_signed(tmp_path)
    creds = CredentialStore(tmp_path / "creds.json")
    key = creds.create("k1", ClientKind.KIOSK, site="s1")
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    await asyncio.to_thread(upgrade, url)
    desk = DeskApp(DeskConfig(database=url, files_dir=tmp_path / "files", centres=["yongjia"],
                              kiosk_credentials=tmp_path / "creds.json", behind_tls=True),
                   files_key=parse_key(new_key()))
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key_file)
    server = TestServer(desk.app, host="127.0.0.1", scheme="https")
    await server.start_server(ssl=server_ssl)
    base = f"https://127.0.0.1:{server.port}"
    spool = Spool(tmp_path / "spool")
    spool.put(_package(key))
    # the system's trust store does not know this desk: nothing is sent, the package waits
    with pytest.raises(TimeoutError):
        await deliver(spool, "case-0001", base, "k1", attempts=2, first_delay=0.05)
    assert spool.pending() == ["case-0001"]
    trusted = ssl.create_default_context(cafile=str(cert))
    assert await deliver(spool, "case-0001", base, "k1", ssl=trusted) == "stored"
    assert spool.pending() == []
    await server.close()
