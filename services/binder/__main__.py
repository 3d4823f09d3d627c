"""``python -m services.binder``: owns the group-to-task bindings."""

from bridge_lib import lean_imports


def main() -> None:
    lean_imports.install()
    # Imported after the tuning above, which must come before aiogram, httpx and structlog load.
    from bridge_lib.runtime import serve
    from services.binder.app import run
    from services.binder.config import BinderSettings

    serve("binder", BinderSettings, run)


if __name__ == "__main__":
    main()
