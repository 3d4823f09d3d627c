"""``make run`` without credentials: a clear message naming each missing variable, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT

REQUIRED = ("TELEGRAM_BOT_TOKEN", "PLANFIX_BASE_URL", "PLANFIX_API_TOKEN", "PLANFIX_WEBHOOK_SECRET")


def test_missing_credentials_are_named_with_how_to_get_them(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "PLANFIX_", "NATS_", "MONGODB_"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)

    result = subprocess.run(
        [sys.executable, "-m", "bridge_lib.launcher"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    for name in REQUIRED:
        assert name in result.stderr
    assert "BotFather" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started: no runtime data was written.
    assert not (tmp_path / "var").exists()
