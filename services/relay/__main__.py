"""``python -m services.relay``: carries messages and comments across, once each."""

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.runtime import serve
    from services.relay.app import run
    from services.relay.config import RelaySettings

    serve("relay", RelaySettings, run)


if __name__ == "__main__":
    main()
