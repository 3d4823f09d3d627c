"""Build the Planfix client every service uses the same way: settings, retries, shared pacing."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog

from bridge_lib.jetstream_ready import when_jetstream_ready
from bridge_lib.metrics import track_planfix_budget
from bridge_lib.pacing import NoPacing, Pacer, shared_pacer
from bridge_lib.planfix import PlanfixAuthError, PlanfixClient, PlanfixRejected, PlanfixUnavailable
from bridge_lib.settings import NatsSettings, PlanfixSettings

log = structlog.get_logger("planfix")


async def paced_planfix_client(
    settings: PlanfixSettings, js: Any, *, replicas: int = 1, startup_timeout_s: float = 60.0
) -> PlanfixClient:
    """A client whose every request takes a turn in the account's budget kept in NATS ``js``
    (in a bucket with ``replicas`` copies, as the streams).

    The budget's bucket is opened (created on first start) with the patience of the streams.
    With ``PLANFIX_PACING_ENABLED=false`` there is no budget: every request goes at once.
    """
    pacer: Pacer
    if not settings.planfix_pacing_enabled:
        log.warning("planfix_pacing_disabled", hint="only for a Planfix stand-in without a request limit")
        pacer = NoPacing()
    else:
        pacer = await when_jetstream_ready(
            "the Planfix pacing bucket",
            partial(
                shared_pacer,
                js,
                replicas=replicas,
                base_url=settings.planfix_base_url,
                rate_per_s=settings.planfix_rate_per_s,
                burst=settings.planfix_burst,
            ),
            timeout_s=startup_timeout_s,
        )
    return PlanfixClient(
        base_url=settings.planfix_base_url,
        token=settings.planfix_api_token.get_secret_value(),
        timeout_s=settings.planfix_timeout_s,
        pacer=pacer,
        retry_attempts=settings.planfix_retry_attempts,
        task_defaults=settings.planfix_task_defaults,
        contact_defaults=settings.planfix_contact_defaults,
    )


async def checked_planfix_client(
    settings: PlanfixSettings, js: Any, nats: NatsSettings
) -> PlanfixClient | None:
    """The client a service starts with: paced in the account's budget (a bucket with the
    streams' copies and patience), its daily budget tracked, its token checked. None when Planfix
    refuses the token (logged with the fix; the service exits 2)."""
    planfix = await paced_planfix_client(
        settings, js, replicas=nats.nats_stream_replicas, startup_timeout_s=nats.nats_startup_timeout_s
    )
    track_planfix_budget(planfix)
    if await planfix_self_check(planfix):
        return planfix
    await planfix.aclose()
    return None


async def planfix_self_check(planfix: PlanfixClient) -> bool:
    """False when Planfix refuses the token (the operator must fix it; the service exits 2);
    True otherwise: an unreachable Planfix only warns, the work waits for it."""
    try:
        await planfix.ping()
    except PlanfixAuthError as error:
        log.error(
            "planfix_token_rejected",
            error=str(error),
            hint="PLANFIX_API_TOKEN is wrong or inactive: Planfix -> Account management -> API access",
        )
        return False
    except PlanfixUnavailable as error:
        log.warning(
            "planfix_unreachable_at_start",
            error=str(error),
            hint="check PLANFIX_BASE_URL; the work waits until Planfix answers",
        )
    except PlanfixRejected as error:
        log.warning("planfix_self_check_refused", error=str(error), hint="the token may lack rights")
    else:
        log.info("planfix_self_check_ok", daily_budget_remaining=planfix.daily_budget_remaining)
    return True
