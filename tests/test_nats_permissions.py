"""Credentials on NATS: the users ``tools.nats_auth`` renders from the catalogue, on a real
nats-server. A service publishing outside its subjects is refused (nothing is stored); its own
publishes, through JetStream, are stored; the JetStream API it needs (streams, durable consumers,
acknowledgements, key-value buckets) works under its permissions."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from bridge_lib.eventbus import ensure_streams, make_broker, stream_config
from bridge_lib.kvstore import ensure_bucket
from contracts.subjects import BINDER_REBUILD_STORE, CATALOGUE, CONSUMERS, LEASES_BUCKET, TELEGRAM_PACE_BUCKET
from devtools import devstack
from tests.support import LoopThread
from tools import nats_auth

PASSWORDS = {user.user: f"pw-{user.user}-0123456789" for user in nats_auth.all_permissions()}


def test_the_deployed_accounts_file_is_the_catalogues() -> None:
    assert nats_auth.ACCOUNTS_FILE.read_text(encoding="utf-8") == nats_auth.render(), (
        "deploy/nats/accounts.conf is stale: run `python -m tools.nats_auth`"
    )


def test_only_the_binder_may_publish_bindings() -> None:
    for service in nats_auth.SERVICES:
        bindings = [s for s in nats_auth.permissions_of(service).publish if s.startswith("binding.")]
        assert bool(bindings) == (service == "binder"), service
    # Every subject of the catalogue has a publisher among the users (the CLI may publish all).
    owned = {s for service in nats_auth.SERVICES for s in nats_auth.permissions_of(service).publish}
    assert {spec.pattern for spec in CATALOGUE} - owned <= {"deadletter.*"}


@pytest.fixture(scope="module")
def server(work_dir: Path) -> Iterator[str]:
    run_dir = work_dir / f"nats-auth-{devstack.free_port()}"
    run_dir.mkdir(parents=True)
    config = run_dir / "nats.conf"
    # As the deployed nodes do: include the file, which nats-server reads relative to the config.
    (run_dir / "accounts.conf").write_text(nats_auth.ACCOUNTS_FILE.read_text(encoding="utf-8"))
    config.write_text('include "accounts.conf"\n', encoding="utf-8")
    env = {user.password_variable: PASSWORDS[user.user] for user in nats_auth.all_permissions()}
    process = devstack.start_nats(
        run_dir / "data", log_file=run_dir / "nats.log", config_file=config, env=env
    )
    try:
        yield process.extra["url"]
    finally:
        process.stop()


class Connection:
    """One user's connection, remembering the permission errors the server sent it."""

    def __init__(self, client: NatsClient, refusals: list[str]) -> None:
        self.client = client
        self.refusals = refusals


async def connect_as(url: str, user: str, password: str | None = None) -> Connection:
    refusals: list[str] = []

    async def on_error(error: Exception) -> None:
        refusals.append(str(error))

    client = await nats.connect(
        url,
        user=user,
        password=password if password is not None else PASSWORDS[user],
        error_cb=on_error,
        max_reconnect_attempts=0,
        connect_timeout=3,
    )
    return Connection(client, refusals)


async def stored_in(url: str, stream: str) -> int:
    operator = await connect_as(url, nats_auth.OPERATOR)
    try:
        info = await operator.client.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await operator.client.close()


def test_a_wrong_password_is_refused(loop: LoopThread, server: str) -> None:
    with pytest.raises((nats.errors.Error, OSError, asyncio.TimeoutError)):
        loop.run(connect_as(server, "binder", "not-the-password"))


def test_each_service_may_publish_its_own_events_through_jetstream_and_nothing_else(
    loop: LoopThread, server: str
) -> None:
    async def scenario() -> dict[str, Any]:
        # Streams declared the way a service starts (every service declares every stream).
        broker = make_broker(server, name="telegram_gateway", user="telegram_gateway",
                             password=PASSWORDS["telegram_gateway"])  # fmt: skip
        await broker.connect()
        try:
            await ensure_streams(broker, timeout_s=10)
        finally:
            await broker.stop()
        outcome: dict[str, Any] = {"stored": [], "refused": [], "errors": {}}
        for service in nats_auth.SERVICES:
            connection = await connect_as(server, service)
            js = connection.client.jetstream()
            try:
                # All at once: each refusal is a wait for an acknowledgement that never comes.
                await asyncio.gather(
                    *(
                        _publish(js, service, spec.pattern, outcome)
                        for spec in CATALOGUE
                        if spec.pattern != "deadletter.*"
                    )
                )
                await asyncio.sleep(0.2)  # the server's -ERR lines arrive on their own
                outcome["errors"][service] = list(connection.refusals)
            finally:
                await connection.client.close()
        return outcome

    outcome = loop.run(scenario(), timeout_s=120)
    for service in nats_auth.SERVICES:
        mine = set(nats_auth.publishes(service))
        stored = {pattern for who, pattern, _ in outcome["stored"] if who == service}
        refused = {pattern for who, pattern in outcome["refused"] if who == service}
        assert stored == mine, service
        assert refused == {spec.pattern for spec in CATALOGUE} - mine - {"deadletter.*"}, service
        if refused:
            assert any("permissions violation" in error.lower() for error in outcome["errors"][service]), (
                service
            )
    assert ("binder", "binding.bound.*", "BINDING") in outcome["stored"]
    assert ("relay", "binding.bound.*") in outcome["refused"]


def test_a_refused_publish_stores_nothing(loop: LoopThread, server: str) -> None:
    async def scenario() -> tuple[int, int, list[str]]:
        broker = make_broker(server, name="binder", user="binder", password=PASSWORDS["binder"])
        await broker.connect()
        try:
            await ensure_streams(broker, timeout_s=10)
        finally:
            await broker.stop()
        before = await stored_in(server, "BINDING")
        relay = await connect_as(server, "relay")
        try:
            with pytest.raises(nats.errors.TimeoutError):
                await relay.client.jetstream().publish(
                    "binding.bound.-100777", b'{"forged": true}', timeout=1
                )
            await asyncio.sleep(0.2)
        finally:
            await relay.client.close()
        return before, await stored_in(server, "BINDING"), relay.refusals

    before, after, refusals = loop.run(scenario())
    assert after == before
    assert any('permissions violation for publish to "binding.bound.-100777"' in r.lower() for r in refusals)


def test_only_a_streams_writers_may_change_its_configuration(loop: LoopThread, server: str) -> None:
    """Every service declares every stream at start (creating an existing one with the same
    configuration changes nothing); changing one is left to those who write into it: a relay
    cannot shorten the BINDING stream's age, the binder can."""
    from contracts.subjects import BINDING_STREAM

    shortened = stream_config(BINDING_STREAM)
    shortened.max_age = 2 * 86_400.0  # two days instead of forever

    async def scenario() -> tuple[float, float]:
        relay = await connect_as(server, "relay")
        try:
            await ensure_streams(_Brokerish(relay.client), timeout_s=10)  # type: ignore[arg-type]
            with pytest.raises(nats.errors.TimeoutError):
                await relay.client.jetstream(timeout=1).update_stream(shortened)
            after_relay = (await relay.client.jetstream().stream_info("BINDING")).config.max_age or 0.0
        finally:
            await relay.client.close()
        binder = await connect_as(server, "binder")
        try:
            await binder.client.jetstream().update_stream(shortened)
            after_binder = (await binder.client.jetstream().stream_info("BINDING")).config.max_age or 0.0
            await binder.client.jetstream().update_stream(stream_config(BINDING_STREAM))
        finally:
            await binder.client.close()
        return after_relay, after_binder

    after_relay, after_binder = loop.run(scenario(), timeout_s=60)
    assert after_relay == 0.0  # kept forever, as declared
    assert after_binder == 2 * 86_400.0


def test_durable_consumers_acks_buckets_and_requests_work_under_the_permissions(
    loop: LoopThread, server: str
) -> None:
    async def scenario() -> None:
        binder = await connect_as(server, "binder")
        relay = await connect_as(server, "relay")
        try:
            await ensure_streams(_Brokerish(binder.client), timeout_s=10)  # type: ignore[arg-type]
            await binder.client.jetstream().publish("binding.bound.-100888", b"{}", timeout=3)
            # The relay reads bindings with its own durable and acknowledges them.
            notices = next(c for c in CONSUMERS if c.durable == "relay-binding-notices")
            sub = await relay.client.jetstream().pull_subscribe(
                notices.filter_subject, durable=notices.durable, stream=notices.stream
            )
            [message] = await sub.fetch(1, timeout=3)
            await message.ack_sync(timeout=3)
            # ... and may not acknowledge for the binder's consumers.
            await relay.client.publish("$JS.ACK.TELEGRAM.binder-bind-requests.1.1.1.1.1.0", b"+ACK")
            # Its key-value buckets: created, written, read.
            for spec in (LEASES_BUCKET, TELEGRAM_PACE_BUCKET):
                kv = await ensure_bucket(relay.client.jetstream(), spec)
                revision = await kv.put("probe", b"1")
                assert (await kv.get("probe")).revision == revision

            # The binder answers the CLI's rebuild requests (replies go to an inbox).
            async def answer(msg: Any) -> None:
                await msg.respond(b"ok")

            await binder.client.subscribe(BINDER_REBUILD_STORE, queue="binder", cb=answer)
            operator = await connect_as(server, nats_auth.OPERATOR)
            try:
                reply = await operator.client.request(BINDER_REBUILD_STORE, b"{}", timeout=3)
                assert reply.data == b"ok"
            finally:
                await operator.client.close()
            await asyncio.sleep(0.2)
            assert binder.refusals == []
            # One refusal only: its acknowledgement for another service's consumer.
            [refused] = [r.lower() for r in relay.refusals if "permissions violation" in r.lower()]
            assert "$js.ack.telegram.binder-bind-requests" in refused
        finally:
            await binder.client.close()
            await relay.client.close()

    loop.run(scenario(), timeout_s=60)


async def _publish(js: Any, service: str, pattern: str, outcome: dict[str, Any]) -> None:
    try:
        ack = await js.publish(pattern[:-1] + "1", b"{}", timeout=2)
        outcome["stored"].append((service, pattern, ack.stream))
    except nats.errors.TimeoutError:  # refused: no acknowledgement ever comes
        outcome["refused"].append((service, pattern))


class _Brokerish:
    """What ``ensure_streams`` reads of a broker: its connection."""

    def __init__(self, client: NatsClient) -> None:
        self.connection = client


def test_the_cluster_nodes_serve_clients_over_tls_with_the_generated_certificates(
    loop: LoopThread, tmp_path: Path
) -> None:
    """deploy/nats/cluster.conf as a node runs it (paths moved out of the container), with the
    certificates of ``tools/deploy_secrets.py --certs``: a service connects over TLS with its
    settings (NATS_TLS_CA_FILE, NATS_USER, NATS_PASSWORD); a plain connection gets nowhere."""
    import shutil

    from bridge_lib.settings import NatsSettings
    from tools import deploy_secrets

    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the certificates with")
    certs = tmp_path / "certs"
    deploy_secrets.make_certs(certs)
    assert deploy_secrets.write_credentials(certs).stat().st_mode & 0o077 == 0
    port, cluster_port, http_port = devstack.free_port(), devstack.free_port(), devstack.free_port()
    text = (nats_auth.ACCOUNTS_FILE.parent / "cluster.conf").read_text(encoding="utf-8")
    for container_path, here in (("/certs/", f"{certs}/"), ("/data", str(tmp_path / "data"))):
        text = text.replace(container_path, here)
    for listen, local_port in (
        ("0.0.0.0:4222", port),
        ("0.0.0.0:6222", cluster_port),
        ("0.0.0.0:8222", http_port),
    ):
        text = text.replace(listen, f"127.0.0.1:{local_port}")
    (tmp_path / "node.conf").write_text(text, encoding="utf-8")
    (tmp_path / "accounts.conf").write_text(nats_auth.ACCOUNTS_FILE.read_text(encoding="utf-8"))
    env = {user.password_variable: PASSWORDS[user.user] for user in nats_auth.all_permissions()}
    process = subprocess.Popen(
        [devstack.venv_binary("nats-server"), "-c", str(tmp_path / "node.conf")],
        env={**os.environ, **env, "NATS_NODE_NAME": "nats1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        devstack.wait_for_port(port, process=process, what="nats-server with TLS")
        settings = NatsSettings(
            NATS_URL=f"tls://localhost:{port}",
            NATS_USER="relay",
            NATS_PASSWORD=PASSWORDS["relay"],
            NATS_TLS_CA_FILE=str(certs / "ca.pem"),
        )

        async def over_tls() -> tuple[bool, list[str]]:
            refusals: list[str] = []

            async def on_error(error: Exception) -> None:
                refusals.append(str(error).lower())

            client = await nats.connect(
                settings.nats_url, error_cb=on_error, connect_timeout=3, max_reconnect_attempts=0,
                **settings.nats_connect_options(),
            )  # fmt: skip
            try:
                await client.publish("binding.bound.1", b"forged")
                await client.flush()
                await asyncio.sleep(0.2)
                return client.is_connected, refusals
            finally:
                await client.close()

        connected, refusals = loop.run(over_tls())
        assert connected
        assert any("permissions violation" in refusal for refusal in refusals)
        with pytest.raises((nats.errors.Error, OSError, asyncio.TimeoutError)):
            loop.run(
                nats.connect(
                    f"nats://localhost:{port}",
                    user="relay",
                    password=PASSWORDS["relay"],
                    connect_timeout=2,
                    max_reconnect_attempts=0,
                    allow_reconnect=False,
                )
            )
    finally:
        process.terminate()
        process.wait(10)


# --- the whole bridge as its own NATS users ------------------------------------------------------


@pytest.fixture(scope="module")
def bridge_as_users(
    loop: LoopThread, work_dir: Path, mongo_url: str, fake_telegram: Any, fake_planfix: Any
) -> Iterator[Any]:
    from tests.e2e_bridge import running_bridge

    with running_bridge(
        loop, work_dir, mongo_url, fake_telegram, fake_planfix, name="nats-users", nats_users=True
    ) as running:
        yield running


def test_the_bridge_runs_both_ways_with_each_service_as_its_own_nats_user(
    bridge_as_users: Any, fake_telegram: Any, fake_planfix: Any, unique_chat_id: int
) -> None:
    """Every service's permissions are enough for all it does (streams, consumers, leases,
    pacing, dead letters): a group bound, a message carried each way, and not one refusal."""
    from tests.e2e_bridge import bind_new_task, texts_sent
    from tests.support import eventually, relayed_comments

    number = bind_new_task(bridge_as_users, fake_telegram, unique_chat_id, "Under users", fake_planfix)
    fake_telegram.add_group_message(unique_chat_id, "from the group")
    eventually(lambda: relayed_comments(fake_planfix, number), what="message carried to Planfix")
    fake_planfix.add_employee_comment(number, "<p>from the task</p>", author_name="Olga Smirnova")
    eventually(
        lambda: any("from the task" in text for text in texts_sent(fake_telegram, unique_chat_id)),
        what="comment carried to the group",
    )
    nats_log = (Path(bridge_as_users.processes["relay"].log_path).parent.parent / "nats.log").read_text()
    # The server logs each refusal ("Publish Violation", "Subscription Violation").
    assert "Violation" not in nats_log
    assert "Authorization Error" not in nats_log
    for name, process in bridge_as_users.processes.items():
        assert "permissions violation" not in process.log_text().lower(), name


def test_three_nodes_form_a_cluster_over_tls_routes_and_carry_replicated_streams(
    loop: LoopThread, tmp_path: Path
) -> None:
    """deploy/nats/cluster.conf on three nodes (addresses moved to loopback): the routes between
    them are TLS with both ends' certificates checked; a service reaches JetStream over TLS with
    its own user, and streams kept on all three nodes accept its events."""
    import shutil

    from bridge_lib.settings import NatsSettings
    from tools import deploy_secrets

    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the certificates with")
    certs = tmp_path / "certs"
    deploy_secrets.make_certs(certs)
    ports = [(devstack.free_port(), devstack.free_port(), devstack.free_port()) for _ in range(3)]
    template = (nats_auth.ACCOUNTS_FILE.parent / "cluster.conf").read_text(encoding="utf-8")
    env = {user.password_variable: PASSWORDS[user.user] for user in nats_auth.all_permissions()}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index, (client, route, http) in enumerate(ports, start=1):
            node = tmp_path / f"nats{index}"
            node.mkdir()
            text = template.replace("/certs/", f"{certs}/").replace("/data", str(node / "data"))
            text = text.replace("0.0.0.0:4222", f"127.0.0.1:{client}").replace(
                "0.0.0.0:8222", f"127.0.0.1:{http}"
            )
            text = text.replace("0.0.0.0:6222", f"127.0.0.1:{route}")
            for other, (_, other_route, _) in enumerate(ports, start=1):
                text = text.replace(f"nats-route://nats{other}:6222", f"nats-route://localhost:{other_route}")
            (node / "node.conf").write_text(text, encoding="utf-8")
            (node / "accounts.conf").write_text(nats_auth.ACCOUNTS_FILE.read_text(encoding="utf-8"))
            log = open(node / "nats.log", "wb")  # noqa: SIM115 - lives with the process
            processes.append(
                subprocess.Popen(
                    [devstack.venv_binary("nats-server"), "-c", str(node / "node.conf")],
                    env={**os.environ, **env, "NATS_NODE_NAME": f"nats{index}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for process, (client, _, _) in zip(processes, ports, strict=True):
            devstack.wait_for_port(client, process=process, what="nats node")
        settings = NatsSettings(
            NATS_URL=",".join(f"tls://localhost:{client}" for client, _, _ in ports),
            NATS_USER="binder",
            NATS_PASSWORD=PASSWORDS["binder"],
            NATS_TLS_CA_FILE=str(certs / "ca.pem"),
            NATS_STREAM_REPLICAS=3,
        )

        async def replicated() -> tuple[str, int]:
            broker = make_broker(settings.nats_url, name="binder", **settings.nats_connect_options())
            await broker.connect()
            try:
                await ensure_streams(broker, replicas=3, timeout_s=60)
                js = broker.connection.jetstream()
                ack = await js.publish("binding.bound.-100999", b"{}", timeout=10)
                info = await js.stream_info("BINDING")
                return ack.stream, 1 + len(info.cluster.replicas or []) if info.cluster else 0
            finally:
                await broker.stop()

        stream, copies = loop.run(replicated(), timeout_s=120)
        assert stream == "BINDING"
        assert copies == 3
        for index in (1, 2, 3):
            node_log = (tmp_path / f"nats{index}" / "nats.log").read_text(errors="replace")
            assert "TLS required for client connections" in node_log
            assert "Route connection created" in node_log
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
