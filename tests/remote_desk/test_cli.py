"""``tongban desk`` commands on a SQLite database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from remote_desk.audit import entry_hash

TONGBAN = [sys.executable, "-m", "tongban", "desk"]


def run(*args: str, stdin: str = "", config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TONGBAN, *args, "--config", str(config)], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "TONGBAN_DESK_FILES_KEY": "A" * 43 + "="})


def test_upgrade_add_users_and_verify_the_audit_chain(tmp_path: Path) -> None:
    config = tmp_path / "desk.toml"
    database = tmp_path / "desk.db"
    config.write_text(f'[desk]\ndatabase = "sqlite:///{database}"\ncentres = ["yongjia"]\n')
    assert run("db", "upgrade", config=config).returncode == 0
    added = run("user", "add", "--username", "wang", "--name", "王芳", "--role", "clerk",
                "--centre", "yongjia", stdin="a long enough secret\n", config=config)
    assert added.returncode == 0, added.stderr
    short = run("user", "add", "--username", "li", "--name", "李", "--role", "clerk",
                "--centre", "yongjia", stdin="short\n", config=config)
    assert short.returncode == 2 and "10 characters" in short.stderr
    assert run("user", "disable", "--username", "wang", config=config).returncode == 0
    with sqlite3.connect(database) as db:
        assert db.execute("select disabled from users where username='wang'").fetchone()[0]
        for i in range(3):  # what the desk writes for three views of a case
            prev = db.execute("select hash from audit order by id desc limit 1").fetchone()
            prev_hash = prev[0] if prev else "0" * 64
            at = datetime(2026, 11, 26, 10, i, tzinfo=UTC)
            h = entry_hash(prev_hash, at, "wang", "view", "case-0001", "")
            db.execute("insert into audit (at, actor, action, target, detail, prev_hash, hash) "
                       "values (?, 'wang', 'view', 'case-0001', '', ?, ?)",
                       (at.replace(tzinfo=None).isoformat(sep=" "), prev_hash, h))
    ok = run("audit", "verify", "--json", config=config)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        "ok": True, "entries": 3, "broken_at": None, "reason": None, "anchors": 0,
        "anchored_entries": 0, "warnings": [
            "no anchor covers this chain: deleting its newest entries would not be noticed"]}
    with sqlite3.connect(database) as db:
        db.execute("update audit set actor = 'nobody' where id = 2")
    broken = run("audit", "verify", config=config)
    assert broken.returncode == 51
    assert broken.stderr.strip() == "error: audit chain broken at entry 2: this entry was edited"


def test_serve_speaks_https_with_the_configured_certificate(tmp_path: Path) -> None:
    import socket
    import ssl
    import time
    import urllib.request

    from tests.tls import self_signed

    self_signed(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "desk.toml"
    config.write_text(f'[desk]\ndatabase = "sqlite:///{tmp_path / "d.db"}"\nport = {port}\n'
                      f'tls_cert = "{tmp_path / "cert.pem"}"\ntls_key = "{tmp_path / "key.pem"}"\n'
                      f'files_dir = "{tmp_path / "files"}"\n')
    assert run("db", "upgrade", config=config).returncode == 0
    proc = subprocess.Popen([*TONGBAN, "serve", "--config", str(config)],
                            env={**os.environ, "TONGBAN_DESK_FILES_KEY": "A" * 43 + "="},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz",
                                            context=context, timeout=2) as r:
                    assert json.loads(r.read()) == {"ok": True}
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
