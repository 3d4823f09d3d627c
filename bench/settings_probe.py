"""What the services' settings classes offer, read from the classes themselves.

The pacing settings (Planfix's 1 request/s budget, Telegram's per-group and per-bot pace) are
being added by other work; the benchmarks switch pacing off for the capacity and latency
figures, and on for the pacing figures, through the variables listed here. A variable is set
only when a settings class declares it, so a name that does not exist yet changes nothing;
a pacing-like variable the bench does not know is reported in the table's notes, so a figure
is never silently paced.
"""

from __future__ import annotations

import re

from bridge_cli.service_settings import settings_classes

# Variable -> value that switches the limit off (a rate far above anything measured here).
PACING_OFF: dict[str, str] = {
    "PLANFIX_RATE_PER_S": "100000",
    "PLANFIX_BURST": "100000",
    "PLANFIX_RATE_BURST": "100000",
    "PLANFIX_PACING_ENABLED": "false",
    "TELEGRAM_GROUP_PER_MINUTE": "1000000",
    "TELEGRAM_GLOBAL_PER_S": "100000",
    "TELEGRAM_PACING_ENABLED": "false",
    # The relay's per-group and per-bot pace for Telegram sends.
    "RELAY_GROUP_PACE_MESSAGES": "1000000",
    "RELAY_GROUP_PACE_WINDOW_S": "1",
    "RELAY_BOT_PACE_PER_S": "100000",
    # The planfix gateway's guard against a flood of webhooks (answered 429 above it).
    "PLANFIX_WEBHOOK_RATE_PER_S": "100000",
    "PLANFIX_WEBHOOK_BURST": "100000",
}
_PACING_LIKE = re.compile(r"RATE|PACE|PACING|BURST|PER_MIN|PER_S\b|_PER_SECOND|BUDGET", re.IGNORECASE)


def declared_variables() -> set[str]:
    names: set[str] = set()
    for settings_class in settings_classes():
        for name, info in settings_class.model_fields.items():
            names.add(str(info.alias or name).upper())
    return names


def pacing_off_env() -> tuple[dict[str, str], list[str]]:
    """The variables that switch pacing off, and warnings about pacing settings not covered."""
    declared = declared_variables()
    env = {name: value for name, value in PACING_OFF.items() if name in declared}
    unknown = sorted(name for name in declared if _PACING_LIKE.search(name) and name not in PACING_OFF)
    warnings = [
        f"settings variable {name} looks like pacing but bench/settings_probe.py does not switch it "
        "off: capacity and latency may be paced"
        for name in unknown
    ]
    return env, warnings
