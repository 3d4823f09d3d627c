"""``python -m services.planfix_gateway``: Planfix scenario webhooks in, fetched comments out."""

import asyncio

from bridge_lib.logging import configure_logging
from bridge_lib.settings import load_settings
from services.planfix_gateway.app import SERVICE, run
from services.planfix_gateway.config import PlanfixGatewaySettings


def main() -> None:
    settings = load_settings(PlanfixGatewaySettings, SERVICE)
    configure_logging(SERVICE, settings.log_level)
    raise SystemExit(asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
