"""``python -m services.binder``: owns the group-to-task bindings."""

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.logging import configure_logging
    from bridge_lib.runtime import run_service
    from bridge_lib.settings import load_settings
    from services.binder.app import run
    from services.binder.config import BinderSettings

    settings = load_settings(BinderSettings, "binder")
    configure_logging("binder", settings.log_level)
    run_service(lambda: run(settings))


if __name__ == "__main__":
    main()
