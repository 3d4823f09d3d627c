"""``python -m services.telegram_gateway``: Telegram groups in, events out."""

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.logging import configure_logging
    from bridge_lib.runtime import run_service
    from bridge_lib.settings import load_settings
    from services.telegram_gateway.app import run
    from services.telegram_gateway.config import TelegramGatewaySettings

    settings = load_settings(TelegramGatewaySettings, "telegram_gateway")
    configure_logging("telegram_gateway", settings.log_level)
    run_service(lambda: run(settings))


if __name__ == "__main__":
    main()
