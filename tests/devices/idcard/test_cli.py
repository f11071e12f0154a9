"""The technician's commands as a technician runs them: a real process, a real pty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devices.idcard.simulator import Fault, VirtualReader

TONGBAN = [sys.executable, "-m", "tongban"]


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TONGBAN, *args], capture_output=True, text=True, timeout=timeout,
                          check=False,
                          env={**os.environ, **(env or {})})


def test_help_teaches_every_command() -> None:
    for args in ([], ["devices"], ["devices", "idcard"], ["devices", "idcard", "read"],
                 ["devices", "idcard", "simulate"], ["devices", "idcard", "watch"],
                 ["devices", "list"], ["demo"]):
        result = run(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_read_json_has_the_documented_fields(sim: VirtualReader) -> None:
    result = run("devices", "idcard", "read", "--port", sim.path, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("card_type", "name", "gender", "nation", "birth_date", "address", "id_number",
                "issuer", "valid_from", "valid_to", "id_number_valid", "warnings", "photo",
                "timings"):
        assert key in data
    assert set(data["photo"]) >= {"format", "bytes", "sha256", "decoded"}
    assert set(data["timings"]) == {"find_ms", "select_ms", "read_ms", "total_ms"}
    assert data["id_number"] == "320509********001X"  # masked by default
    assert data["name"] == "沈*顺"
    assert data["valid_to"] is None and data["valid_long_term"] is True


def test_read_unmasked_with_simulated_decoder_from_env(sim: VirtualReader) -> None:
    result = run("devices", "idcard", "read", "-p", sim.path, "--json", "--unmask",
                 "--fingerprint", env={"TONGBAN_IDCARD__PHOTO_DECODER__KIND": "simulated"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["id_number"] == "32050919490312001X"
    assert data["birth_date"] == "1949-03-12"
    assert data["photo"]["decoded"] is True and data["photo"]["simulated"] is True
    assert len(data["fingerprints"]) == 2


def test_human_read_output(sim: VirtualReader, tmp_path: Path) -> None:
    photo = tmp_path / "photo.bmp"
    result = run("devices", "idcard", "read", "-p", sim.path, "--address", "--save-photo",
                 str(photo), env={"TONGBAN_IDCARD__PHOTO_DECODER__KIND": "simulated"})
    assert result.returncode == 0, result.stderr
    assert "居民身份证" in result.stdout and "长期" in result.stdout
    assert "320509********001X" in result.stdout and "SIMULATED" in result.stdout
    assert photo.read_bytes()[:2] == b"BM"


def test_probe(sim: VirtualReader) -> None:
    result = run("devices", "idcard", "probe", "-p", sim.path, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sam_id"] == "05.01-20260101-3200000001-0001234567"


@pytest.mark.parametrize(("setup", "code", "words"), [
    ("no-card", 44, "no card on the reader"),
    ("sam-failure", 42, "SAM failed its self-test"),
    ("stall", 16, "no complete reply"),
    ("bad-checksum", 12, "checksum"),
    ("unplugged", 17, "cannot open serial port"),
])
def test_failures_are_one_line_with_distinct_exit_codes(
        sim: VirtualReader, setup: str, code: int, words: str) -> None:
    if setup == "no-card":
        sim.remove()
    elif setup == "unplugged":
        sim.unplug()
    else:
        sim.inject(Fault(setup), None)
    result = run("devices", "idcard", "read", "-p", sim.path, "--json")
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert "Traceback" not in result.stderr


def test_config_file_and_bad_config(sim: VirtualReader, tmp_path: Path) -> None:
    good = tmp_path / "kiosk.toml"
    good.write_text(f'[idcard]\nport = "{sim.path}"\n[idcard.timeouts]\nread = 2.5\n'
                    '[kiosk]\nwhatever = 1\n')
    result = run("devices", "idcard", "--config", str(good), "probe")
    assert result.returncode == 0, result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[idcard]\nport = "/dev/x"\nbaud = 12345\n')
    result = run("devices", "idcard", "--config", str(bad), "probe")
    assert result.returncode == 3
    assert "idcard.baud" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    typo = tmp_path / "typo.toml"
    typo.write_text('[idcard]\nprot = "/dev/x"\n')
    result = run("devices", "idcard", "--config", str(typo), "probe")
    assert result.returncode == 3 and "idcard.prot" in result.stderr


def test_no_port_anywhere_is_a_usage_error() -> None:
    result = run("devices", "idcard", "read")
    assert result.returncode == 2
    assert "--port" in result.stderr


def test_simulate_command_serves_and_takes_stdin_commands(tmp_path: Path) -> None:
    link = tmp_path / "ttyIDC"
    proc = subprocess.Popen(
        [*TONGBAN, "devices", "idcard", "simulate", "--card", "resident", "--link", str(link),
         "--reread", "stays", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        info = json.loads(proc.stdout.readline())
        assert info["path"] == str(link) and info["simulated"] is True
        first = run("devices", "idcard", "read", "-p", str(link), "--json")
        assert json.loads(first.stdout)["card_type"] == "resident"
        proc.stdin.write("remove\n")
        proc.stdin.flush()
        time.sleep(0.3)
        assert run("devices", "idcard", "read", "-p", str(link)).returncode == 44
        proc.stdin.write("insert hk-macao-taiwan\n")
        proc.stdin.flush()
        time.sleep(0.3)
        second = run("devices", "idcard", "read", "-p", str(link), "--json")
        assert json.loads(second.stdout)["card_type"] == "hk_macao_taiwan"
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_watch_prints_json_events(sim: VirtualReader) -> None:
    result = run("devices", "idcard", "watch", "-p", sim.path, "--json", "--count", "2",
                 "--seconds", "10")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["card-inserted", "card-removed"]
    assert events[0]["card"]["id_number"] == "320509********001X"


def test_samples_and_list() -> None:
    result = run("devices", "idcard", "samples", "--json")
    names = {s["name"] for s in json.loads(result.stdout)}
    assert {"resident", "hk-macao-taiwan", "foreign-permanent-2017",
            "foreign-permanent-2023"} <= names
    listed = run("devices", "list", "--json", "--all")
    assert listed.returncode == 0
    assert isinstance(json.loads(listed.stdout), list)


def test_demo_reads_every_sample_card() -> None:
    result = run("demo", "--cards", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] and data["simulated"]
    assert {r["card_type"] for r in data["reads"]} == {
        "resident", "hk_macao_taiwan", "foreign_permanent_2017", "foreign_permanent_2023"}
    assert all(r["photo"]["simulated"] for r in data["reads"])
