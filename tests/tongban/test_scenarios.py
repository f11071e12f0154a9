"""Every situation of the day as CI plays it: ``tongban demo --auto --scenario NAME --json``
through the real hub, desk and kiosk services (devices simulated, headless clerks). Each
scenario's JSON is printed into the test log and kept in test-artifacts/, with ``ok`` and the
sequence of what each citizen was shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tongban.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

# a scenario is a whole working situation (two-clerks runs twice, on SQLite and PostgreSQL)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
Capture = pytest.CaptureFixture[str]


def _play(name: str, folder: Path, capsys: Capture) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tongban", "demo", "--auto", "--scenario", name, "--json",
         "--folder", str(folder)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"scenario-{name}.json").write_text(result.stdout or result.stderr)
    with capsys.disabled():  # into the CI log, passed or not
        print(f"\n== scenario {name} (exit {result.returncode})\n{result.stdout}")
    assert result.stdout, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    failed = [c for run in report.get("runs", [report]) for c, ok in
              run.get("checks", {}).items() if not ok]
    assert report["ok"] is True and result.returncode == 0, (failed, result.stderr[-3000:])
    return report


def _states(steps: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for step in steps:
        if not out or out[-1] != step["state"]:
            out.append(step["state"])
    return out


def test_busy_second_citizen_told_position_and_wait(tmp_path: Path, capsys: Capture) -> None:
    report = _play("busy", tmp_path, capsys)
    second = report["citizens"]["citizen_2"]
    waiting = [s for s in second if s["state"] == "waiting" and not s.get("offered")]
    assert waiting and waiting[0]["position"] == 1 and waiting[0]["expected_wait_s"] > 0
    assert waiting[0]["position_words"] == "下一位就是您" and "分钟" in waiting[0]["wait_words"]
    assert _states(second)[-3:] == ["in_call", "result", "idle"]
    numbers = report["case_numbers"]
    assert numbers[0].endswith("-00001") and numbers[1].endswith("-00002")


def test_pick_centre_citizen_leaves_the_request_step(tmp_path: Path, capsys: Capture) -> None:
    report = _play("pick", tmp_path, capsys)
    states = _states(report["citizens"]["citizen"])
    assert states.index("waiting") < states.index("in_call") < states.index("result")
    clerk = report["clerks"]["demo-clerk"]
    rows = [r for s in clerk if s["what"] == "queue" for r in s["rows"]]
    assert rows and rows[0]["matter"] == "异地贷款缴存证明"  # names, not codes
    assert not [s for s in clerk if s["what"] == "offered"]


@pytest.mark.parametrize("name", ["decline", "lapse"])
def test_handed_back_citizen_is_served_by_the_next_clerk(name: str, tmp_path: Path,
                                                         capsys: Capture) -> None:
    report = _play(name, tmp_path, capsys)
    states = _states(report["citizens"]["citizen"])
    assert states[-3:] == ["in_call", "result", "idle"]
    assert [s["what"] for s in report["clerks"]["demo-clerk"] if s["what"] == "call_started"] \
        == []
    assert [s for s in report["clerks"]["demo-clerk-2"] if s["what"] == "decided"]


def test_transfer_case_follows_to_the_other_centre(tmp_path: Path, capsys: Capture) -> None:
    report = _play("transfer", tmp_path, capsys)
    notes = [s.get("note") for s in report["citizens"]["citizen"]]
    assert any(n and "苏州市吴江区政务服务中心" in n for n in notes)
    assert report["case_number"].startswith("wujiang-")


def test_cancel_leaves_nothing(tmp_path: Path, capsys: Capture) -> None:
    report = _play("cancel", tmp_path, capsys)
    assert report["gone_from_every_list_ms"] < 2000 and report["kiosk_residue"] == []


def test_closed_says_the_next_opening_in_words(tmp_path: Path, capsys: Capture) -> None:
    report = _play("closed", tmp_path, capsys)
    closed = [s for s in report["citizens"]["citizen"] if s["state"] == "closed"]
    assert closed and closed[0]["next_opening_words"] in closed[0]["detail"]


def test_two_clerks_numbers_and_conflicts_on_both_databases(tmp_path: Path,
                                                            capsys: Capture) -> None:
    report = _play("two-clerks", tmp_path, capsys)
    runs = report["runs"]
    assert runs[0].get("database", "sqlite") == "sqlite"
    for run in runs:
        if run.get("skipped"):
            continue
        assert run["same_case_outcomes"] == ["200", "409"]


def test_every_scenario_has_a_test() -> None:
    tested = {"busy", "pick", "decline", "lapse", "transfer", "cancel", "closed", "two-clerks"}
    assert set(SCENARIOS) == tested
