"""One-time set-up of a compose deployment's own secrets (docs/operations.md, "Credentials").

    python3 tools/deploy_secrets.py           # deploy/secrets/credentials.env, once
    python3 tools/deploy_secrets.py --certs   # and, for the cluster, TLS files and MongoDB key

then ``docker compose --env-file deploy/secrets/credentials.env -f deploy/compose.yaml up -d``.

Passwords: one random value per NATS user (tools/nats_auth.py: one user per service and the
operator's ``bridge`` CLI) and per MongoDB user (deploy/mongo/create-users.js: root, binder,
relay). URL-safe, so they go into ``MONGODB_URL`` unescaped. They live in a file of their own,
read by Compose to fill in the compose file, not in ``.env``, which every service container
receives whole: each container gets only its own password.

``--certs`` (needs ``openssl``): a private CA, one server certificate for every NATS node
(``nats1``..``nats3``, ``localhost``) signed by it, used for the client port and the routes
between nodes, and the key file the MongoDB replica set members authenticate each other with.
The CA key stays there too: deploy/secrets/ is in .gitignore; back it up with .env.
Standard library only: it runs on a Docker host without the project's virtualenv.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from pathlib import Path

# Read by deploy/nats/accounts.conf (nats-server) and the compose files; names as they are used.
NATS_PASSWORDS = (
    "TELEGRAM_GATEWAY_NATS_PASSWORD",
    "PLANFIX_GATEWAY_NATS_PASSWORD",
    "BINDER_NATS_PASSWORD",
    "RELAY_NATS_PASSWORD",
    "BRIDGE_OPERATOR_NATS_PASSWORD",
)
MONGODB_PASSWORDS = ("MONGO_ROOT_PASSWORD", "BINDER_MONGODB_PASSWORD", "RELAY_MONGODB_PASSWORD")
NATS_NODES = ("nats1", "nats2", "nats3")
SECRETS_DIR = Path(__file__).resolve().parent.parent / "deploy" / "secrets"
CREDENTIALS_FILE = "credentials.env"
CERT_DAYS = 825


def password_lines() -> list[str]:
    lines = ["# Deployment credentials (tools/deploy_secrets.py): docker compose --env-file <this file>"]
    lines += [f"{name}={secrets.token_urlsafe(32)}" for name in (*NATS_PASSWORDS, *MONGODB_PASSWORDS)]
    return lines


def make_certs(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca.pem"
    key, request, cert = directory / "server-key.pem", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    names = ",".join([*(f"DNS:{node}" for node in NATS_NODES), "DNS:localhost", "IP:127.0.0.1"])
    extensions.write_text(
        f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
        encoding="utf-8",
    )
    _openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", ca_key, "-out", ca_cert,
             "-days", CERT_DAYS, "-subj", "/CN=planfix-bridge NATS CA")  # fmt: skip
    _openssl("req", "-newkey", "rsa:3072", "-nodes", "-keyout", key, "-out", request,
             "-subj", "/CN=planfix-bridge NATS")  # fmt: skip
    _openssl("x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", CERT_DAYS, "-extfile", extensions)  # fmt: skip
    request.unlink()
    keyfile = directory / "mongo-keyfile"
    keyfile.write_text(secrets.token_urlsafe(96) + "\n", encoding="ascii")
    (directory / "ca.srl").unlink(missing_ok=True)
    extensions.unlink()
    # Private: nats-server runs as root in its container, MongoDB copies its key at start.
    for private in (ca_key, key, keyfile):
        private.chmod(0o600)
    return [ca_cert, cert, key, keyfile]


def _openssl(*arguments: str | Path | int) -> None:
    command = ["openssl", *(str(argument) for argument in arguments)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}... failed:\n{result.stderr}")


def write_credentials(directory: Path) -> Path:
    """The passwords file; an existing one is kept (its passwords are already in use)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CREDENTIALS_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text("\n".join(password_lines()) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", type=Path, default=SECRETS_DIR, help="where to write (deploy/secrets)")
    parser.add_argument("--certs", action="store_true", help="also the cluster's TLS files and MongoDB key")
    args = parser.parse_args(argv)
    print(f"passwords: {write_credentials(args.dir)}", file=sys.stderr)
    if args.certs:
        for path in make_certs(args.dir):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
