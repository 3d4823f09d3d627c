"""The four services' settings checked at once: ``bridge doctor`` and ``make run`` name every
missing or wrong variable with how to get it, before anything starts."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from bridge_lib.settings import describe_settings_error


def settings_classes() -> list[type[BaseSettings]]:
    # The CLI and the launcher are tooling, not services: they may look at every service's settings.
    from services.binder.config import BinderSettings
    from services.planfix_gateway.config import PlanfixGatewaySettings
    from services.relay.config import RelaySettings
    from services.telegram_gateway.config import TelegramGatewaySettings

    return [TelegramGatewaySettings, PlanfixGatewaySettings, BinderSettings, RelaySettings]


def settings_problems() -> list[str]:
    """One line per missing or wrong variable (each once, though several services read it)."""
    problems: list[str] = []
    for settings_class in settings_classes():
        try:
            settings_class()
        except ValidationError as error:
            problems.extend(line for line in describe_settings_error(error) if line not in problems)
    return problems
