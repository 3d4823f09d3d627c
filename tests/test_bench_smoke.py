"""The benchmark harness (``bench/``) in its quick mode, so that ``make bench`` cannot rot.

No figure is asserted: speed belongs in the benchmark's table, not in a test. What is checked
is that every phase runs against the real services and reports each issue item, and the small
pure pieces (percentiles, trend, py-spy's collapsed stacks) compute what they say.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.profile import parse_collapsed
from bench.stats import percentile, trend
from bench.traffic import wall_time
from tests.support import REPO_ROOT


def test_quick_run_reports_every_item_of_the_issue(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"

    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--mode", "quick", "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads(output.read_text())["figures"]
    assert {figure["item"].split()[0] for figure in figures} >= {"1", "2", "3", "4", "5", "6"}
    for figure in figures:
        assert figure["value"] is not None or figure["note"].startswith("skipped: "), figure
    assert "bridge / ceiling" in completed.stdout
    assert f"{os.cpu_count()} cores" in completed.stdout


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_trend_of_a_growing_series_is_its_slope() -> None:
    minutes = [0.0, 1.0, 2.0, 3.0]

    slope, r2 = trend(minutes, [100.0, 102.0, 104.0, 106.0])

    assert slope == pytest.approx(2.0)
    assert r2 == pytest.approx(1.0)
    assert trend(minutes, [80.0] * 4) == (0.0, 0.0)


def test_collapsed_stacks_give_self_time_by_package_and_time_under_our_functions() -> None:
    text = "\n".join(
        [
            "main (services/relay/__main__.py:13);EffectStore.get (services/relay/effects.py:28);"
            "find_one (pymongo/collection.py:10) 3",
            "main (services/relay/__main__.py:13);PlanfixClient._call (bridge_lib/planfix.py:178);"
            "send (httpx/_client.py:1) 1",
        ]
    )

    profile = parse_collapsed("relay", text)

    assert profile.samples == 4
    assert dict(profile.top_packages()) == {"pymongo": 75.0, "httpx": 25.0}
    assert dict(profile.top_own())["main (services/relay/__main__.py)"] == 100.0
    assert dict(profile.top_under_own()) == {
        "EffectStore.get (services/relay/effects.py)": 75.0,
        "PlanfixClient._call (bridge_lib/planfix.py)": 25.0,
    }


def test_a_fakes_monotonic_stamp_reads_as_wall_clock_time() -> None:
    assert wall_time(time.monotonic()) == pytest.approx(time.time(), abs=0.01)
    assert wall_time(1_800_000_000.5) == 1_800_000_000.5


def test_known_people_cost_no_planfix_request_per_message_once_warm(mongo_url: str) -> None:
    from bench.people import run

    figures = asyncio.run(run(mongo_url))

    assert figures["planfix_requests_per_1000_warm"] == 0
    # 15 employees found by profile (one request each), 10 strangers (employee, contact, create).
    assert figures["planfix_requests_per_1000_warm-up"] == 15 + 10 * 3
    assert figures["contacts_created"] == 10
