"""``python -m services.planfix_gateway``: Planfix scenario webhooks in, fetched comments out."""

import asyncio

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.logging import configure_logging
    from bridge_lib.settings import load_settings
    from services.planfix_gateway.app import SERVICE, run
    from services.planfix_gateway.config import PlanfixGatewaySettings

    settings = load_settings(PlanfixGatewaySettings, SERVICE)
    configure_logging(SERVICE, settings.log_level)
    raise SystemExit(asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
