"""Build the Planfix client every service uses the same way: settings, retries, shared pacing."""

from __future__ import annotations

from typing import Any

from bridge_lib.pacing import shared_pacer
from bridge_lib.planfix import PlanfixClient
from bridge_lib.settings import PlanfixSettings


async def paced_planfix_client(settings: PlanfixSettings, js: Any) -> PlanfixClient:
    """A client whose every request takes a turn in the account's budget kept in NATS ``js``."""
    pacer = await shared_pacer(
        js,
        base_url=settings.planfix_base_url,
        rate_per_s=settings.planfix_rate_per_s,
        burst=settings.planfix_burst,
    )
    return PlanfixClient(
        base_url=settings.planfix_base_url,
        token=settings.planfix_api_token.get_secret_value(),
        timeout_s=settings.planfix_timeout_s,
        pacer=pacer,
        retry_attempts=settings.planfix_retry_attempts,
        task_defaults=settings.planfix_task_defaults,
    )
