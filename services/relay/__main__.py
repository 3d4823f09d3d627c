"""``python -m services.relay``: carries messages and comments across, once each."""

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.logging import configure_logging
    from bridge_lib.runtime import run_service
    from bridge_lib.settings import load_settings
    from services.relay.app import run
    from services.relay.config import RelaySettings

    settings = load_settings(RelaySettings, "relay")
    configure_logging("relay", settings.log_level)
    run_service(lambda: run(settings))


if __name__ == "__main__":
    main()
