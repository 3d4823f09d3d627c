"""`make audit`: what it says for each kind of answer from the vulnerability service."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.audit import UNAUDITED, judge


def answer(report: dict[str, Any] | None, stderr: str = "") -> subprocess.CompletedProcess[str]:
    stdout = json.dumps(report) if report is not None else ""
    return subprocess.CompletedProcess(["pip-audit"], 1 if report is None else 0, stdout, stderr)


VULNERABLE = {
    "dependencies": [
        {
            "name": "aiohttp",
            "version": "3.0",
            "vulns": [{"id": "GHSA-1", "aliases": ["CVE-1"], "fix_versions": ["3.1"]}],
        },
        {"name": "httpx", "version": "0.28.1", "vulns": []},
    ]
}


def test_a_known_vulnerability_fails_the_audit(capsys: pytest.CaptureFixture[str]) -> None:
    assert judge(answer(VULNERABLE), {}) == 1
    assert "aiohttp 3.0: GHSA-1 (fixed in: 3.1)" in capsys.readouterr().out


def test_a_vulnerability_kept_with_a_written_reason_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert judge(answer(VULNERABLE), {"CVE-1": "never reachable from the bridge"}) == 0
    assert "kept aiohttp 3.0: GHSA-1 — never reachable from the bridge" in capsys.readouterr().out


def test_an_unreachable_service_fails_as_unaudited_never_green(capsys: pytest.CaptureFixture[str]) -> None:
    assert judge(answer(None, stderr="ConnectionError: pypi.org unreachable"), {}) == UNAUDITED != 0
    assert "NOTHING WAS AUDITED" in capsys.readouterr().out


def test_packages_the_service_does_not_know_are_named_as_not_audited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report: dict[str, list[dict[str, Any]]] = {
        "dependencies": [{"name": "motor", "skip_reason": "Dependency not found on PyPI"}]
    }
    assert judge(answer(report), {}) == UNAUDITED  # nothing at all audited: not a pass
    out = capsys.readouterr().out
    assert "NOT audited: motor" in out
    assert "NOTHING could be audited" in out
    report["dependencies"].append({"name": "httpx", "version": "0.28.1", "vulns": []})
    assert judge(answer(report), {}) == 0  # one unknown to the service beside audited ones
    assert "NOT audited: motor" in capsys.readouterr().out


def test_ci_accepts_an_unaudited_build_only_when_told_to_and_says_so() -> None:
    script = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "tools/audit.py" in script
    assert 'CI_ALLOW_UNAUDITED:-0}" = 1' in script
    assert "UNAUDITED" in script
