"""`make audit`: check the pinned dependencies (constraints.txt) for known vulnerabilities.

* A known vulnerability fails the audit, unless `audit-exceptions.toml` lists its id with the
  reason for keeping the package (and who decided, and when to look again).
* When the vulnerability service cannot be reached (nothing could be audited), the audit fails
  with its own exit code, 3 (UNAUDITED), never 0: "no vulnerabilities found" must not be read
  into an audit that did not happen. CI may accept that case only explicitly
  (``.ci/run`` with ``CI_ALLOW_UNAUDITED=1``, which says so in its output).
* Packages the service knows nothing about (not on PyPI) are named as not audited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Exit codes: a known vulnerability without a written reason; nothing could be audited.
VULNERABLE = 1
UNAUDITED = 3
LOCK = ROOT / "constraints.txt"
EXCEPTIONS = ROOT / "audit-exceptions.toml"


def allowed_vulnerabilities() -> dict[str, str]:
    if not EXCEPTIONS.exists():
        return {}
    entries = tomllib.loads(EXCEPTIONS.read_text()).get("exception", [])
    allowed: dict[str, str] = {}
    for entry in entries:
        reason = str(entry.get("reason", "")).strip()
        if not reason:
            sys.exit(f"audit-exceptions.toml: {entry.get('id')} has no reason; write down why it is kept")
        allowed[str(entry["id"])] = reason
    return allowed


def main() -> int:
    return judge(run_pip_audit(), allowed_vulnerabilities())


def run_pip_audit() -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--no-deps", "--disable-pip",
               "--progress-spinner", "off", "--format", "json"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def judge(result: subprocess.CompletedProcess[str], allowed: dict[str, str]) -> int:
    """Print what the audit found; 1 when a known vulnerability has no written reason."""
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print("audit: the vulnerability service could not be reached; NOTHING WAS AUDITED.")
        print("       " + (result.stderr.strip().splitlines() or ["(no detail)"])[-1])
        return UNAUDITED
    audited, skipped, failures = 0, list[str](), list[str]()
    for dependency in report.get("dependencies", []):
        if "skip_reason" in dependency:
            skipped.append(dependency["name"])
            continue
        audited += 1
        for vulnerability in dependency.get("vulns", []):
            ids = [vulnerability["id"], *vulnerability.get("aliases", [])]
            kept = next((allowed[i] for i in ids if i in allowed), None)
            line = f"{dependency['name']} {dependency['version']}: {vulnerability['id']}"
            if kept:
                print(f"audit: kept {line} — {kept}")
            else:
                fixes = ", ".join(vulnerability.get("fix_versions", [])) or "no fixed release yet"
                failures.append(f"{line} (fixed in: {fixes})")
    total = audited + len(skipped)
    print(f"audit: {audited} of {total} pinned packages audited against the vulnerability service.")
    if skipped:
        print(f"audit: the service knows nothing about {len(skipped)} of them (not listed there, or "
              f"unreachable from here), so they were NOT audited: {', '.join(sorted(skipped))}")  # fmt: skip
    if failures:
        print("audit: known vulnerabilities without a written reason to keep them:")
        for failure in failures:
            print(f"  {failure}")
        print("Upgrade them (make lock), or add them to audit-exceptions.toml with the reason.")
        return VULNERABLE
    if audited == 0:
        print("audit: NOTHING could be audited here; the result says nothing about vulnerabilities.")
        return UNAUDITED
    else:
        print("audit: no known vulnerability in the audited packages.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
