"""``python -m bridge_cli``: the same as the ``bridge`` console script."""

from bridge_cli.main import app

app(prog_name="bridge")
