"""``python -m services.telegram_gateway``: Telegram groups in, events out."""

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.runtime import serve
    from services.telegram_gateway.app import run
    from services.telegram_gateway.config import TelegramGatewaySettings

    serve("telegram_gateway", TelegramGatewaySettings, run)


if __name__ == "__main__":
    main()
