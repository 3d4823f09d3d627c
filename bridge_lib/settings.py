"""Settings pieces every service composes, and one loader that fails with a clear message.

Names are the environment variables themselves (``TELEGRAM_BOT_TOKEN``...), read from the
environment and an optional ``.env`` in the working directory. A service lists only the pieces
it needs, so each one asks only for its own credentials.
"""

from __future__ import annotations

import re
import ssl
import sys
import uuid
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge_lib.planfix import ContactDefaults, RecipientRole, Recipients, RolesForm, TaskDefaults
from bridge_lib.redaction import register_settings_secrets

# A secret shorter than this is guessable: whoever guesses it may post to the bridge.
MIN_SECRET_LENGTH = 16
HOW_TO_MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

# What to tell an operator about a variable that is missing or wrong.
HOW_TO_GET: dict[str, str] = {
    "TELEGRAM_BOT_TOKEN": (
        "talk to @BotFather in Telegram, /newbot, and copy the token it gives; then /setprivacy -> "
        "Disable, or the bot cannot see group messages"
    ),
    "TELEGRAM_API_BASE_URL": "the Bot API server, normally https://api.telegram.org",
    "PLANFIX_BASE_URL": "your account's REST address, e.g. https://<account>.planfix.com/rest/",
    "PLANFIX_API_TOKEN": (
        "in Planfix: Account management -> API access -> REST API -> add a token "
        "(paid plans only; best issued for a dedicated 'robot' employee)"
    ),
    "PLANFIX_WEBHOOK_SECRET": (
        f"any long random string, e.g. {HOW_TO_MAKE_SECRET}; "
        "the Planfix scenario calls /planfix/webhook/<this secret>"
    ),
    "NATS_URL": "the NATS server, e.g. nats://127.0.0.1:4222",
    "MONGODB_URL": "the MongoDB server, e.g. mongodb://127.0.0.1:27017",
}


def shaped_secret(shape: re.Pattern[str], refusal: str) -> AfterValidator:
    """The check of a secret setting (``Annotated[SecretStr, shaped_secret(...)]``): at least
    ``MIN_SECRET_LENGTH`` characters, all of them as ``shape`` allows (``refusal`` says which)."""

    def check(value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters long (e.g. {HOW_TO_MAKE_SECRET})"
            )
        if not shape.fullmatch(secret):
            raise ValueError(refusal)
        return value

    return AfterValidator(check)


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    # What the bot speaks in a group until /lang chooses (or its first binder's Telegram language
    # decides): "ru" or "en". Log messages stay English whatever this says.
    bridge_language: str = Field(default="ru", alias="BRIDGE_LANGUAGE", pattern="^(ru|en)$")
    # How often the service hands freed heap pages back to the system (glibc's malloc_trim), so
    # RSS comes down after a burst; 0: never.
    heap_trim_interval_s: float = Field(default=10.0, alias="HEAP_TRIM_INTERVAL_S", ge=0, le=3600)


class HealthSettings(BridgeSettings):
    """Where /healthz, /readyz and /metrics listen; each service adds its own ``*_HEALTH_PORT``."""

    # Loopback by default (make run); the compose stack sets 0.0.0.0 so Prometheus can scrape.
    health_host: str = Field(default="127.0.0.1", alias="HEALTH_HOST")


class NatsSettings(BridgeSettings):
    # One server, or several separated by commas (the nodes of a cluster).
    nats_url: str = Field(default="nats://127.0.0.1:4222", alias="NATS_URL")
    # Copies JetStream keeps of each stream: 1 on a single server, 3 on a 3-node cluster.
    nats_stream_replicas: int = Field(default=1, alias="NATS_STREAM_REPLICAS", ge=1, le=5)
    # How long start-up waits for JetStream to accept the streams (a fresh cluster elects its
    # leader first) before the service gives up and exits 1.
    nats_startup_timeout_s: float = Field(default=60.0, alias="NATS_STARTUP_TIMEOUT_S", gt=0)
    # The longest pause between two tries of a message that waits out an outage (Planfix,
    # Telegram, the store or NATS away); such a message is never given up on.
    retry_max_delay_s: float = Field(default=300.0, alias="RETRY_MAX_DELAY_S", gt=0, le=3600)
    # Who this service is to NATS (deploy/nats: one user per service, allowed exactly the
    # subjects it owns): a user and password, or a credentials file (NATS_CREDS). Unset: no
    # authentication (the embedded `make run` stack on loopback). Credentials in NATS_URL
    # (nats://user:password@host) work too.
    nats_user: str | None = Field(default=None, alias="NATS_USER")
    nats_password: SecretStr | None = Field(default=None, alias="NATS_PASSWORD")
    nats_creds: str | None = Field(default=None, alias="NATS_CREDS")
    # The CA that signed the servers' certificates, for tls:// URLs (deploy/nats/make-certs.sh).
    nats_tls_ca_file: str | None = Field(default=None, alias="NATS_TLS_CA_FILE")

    def nats_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` / ``NatsBroker``: credentials and TLS."""
        options: dict[str, Any] = {}
        if self.nats_user:
            options["user"] = self.nats_user
            if self.nats_password is not None:
                options["password"] = self.nats_password.get_secret_value()
        if self.nats_creds:
            options["user_credentials"] = self.nats_creds
        if self.nats_tls_ca_file:
            options["tls"] = ssl.create_default_context(cafile=self.nats_tls_ca_file)
        return options


class MongoSettings(BridgeSettings):
    # With credentials in a deployment (mongodb://<service>:<password>@host/?authSource=admin;
    # deploy/mongo creates one user per service); never logged (bridge_lib.redaction).
    mongodb_url: str = Field(default="mongodb://127.0.0.1:27017", alias="MONGODB_URL")
    mongodb_database: str = Field(default="planfix_bridge", alias="MONGODB_DATABASE")


class TelegramSettings(BridgeSettings):
    telegram_bot_token: SecretStr = Field(alias="TELEGRAM_BOT_TOKEN")
    telegram_api_base_url: str = Field(default="https://api.telegram.org", alias="TELEGRAM_API_BASE_URL")

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        # BotFather tokens look like "123456:ABC-def..."; catch a pasted chat id or URL early.
        if ":" not in value.get_secret_value():
            raise ValueError("does not look like a bot token (expected '<digits>:<letters>')")
        return value


class PlanfixSettings(BridgeSettings):
    planfix_base_url: str = Field(alias="PLANFIX_BASE_URL")
    planfix_api_token: SecretStr = Field(alias="PLANFIX_API_TOKEN")
    # Written into sourceId of every comment the bridge creates, so its own comments are
    # recognised when Planfix sends them back. A fixed UUID; change it only with care.
    planfix_source_id: str = Field(default="0c6b7f0e-2d7a-4f0e-9a56-6a3f1c9b8e11", alias="PLANFIX_SOURCE_ID")
    planfix_timeout_s: float = Field(default=15.0, alias="PLANFIX_TIMEOUT_S")
    # The account's request budget, shared by every service and replica (bridge_lib.pacing).
    planfix_rate_per_s: float = Field(default=1.0, alias="PLANFIX_RATE_PER_S", gt=0)
    planfix_burst: int = Field(default=1, alias="PLANFIX_BURST", ge=1)
    # false: no shared budget at all, not even its NATS round trips (a Planfix stand-in with no
    # limit, e.g. a benchmark's fake); never against a real account.
    planfix_pacing_enabled: bool = Field(default=True, alias="PLANFIX_PACING_ENABLED")
    # Tries of one call when Planfix is unreachable, failing or throttling (1 = no retry).
    planfix_retry_attempts: int = Field(default=4, alias="PLANFIX_RETRY_ATTEMPTS", ge=1)
    # What every task the bridge creates gets (all optional).
    planfix_task_template_id: int | None = Field(default=None, alias="PLANFIX_TASK_TEMPLATE_ID")
    planfix_task_project_id: int | None = Field(default=None, alias="PLANFIX_TASK_PROJECT_ID")
    planfix_task_assignees: str = Field(default="", alias="PLANFIX_TASK_ASSIGNEES")
    # Who Planfix notifies of a comment carried from Telegram (its ``recipients``), in the order
    # Planfix's own Telegram integration uses: people mentioned, the task's participants, its
    # assignees; or "none". Roles listed are all sent: Planfix notifies each role's people.
    planfix_notify: str = Field(default="mentioned,participants,assignees", alias="PLANFIX_NOTIFY")
    # Who a Telegram message of someone not linked to Planfix is written as: "create" a contact
    # for them once (with their name and Telegram), or "none" (the robot, with an author line).
    planfix_contacts: str = Field(default="create", alias="PLANFIX_CONTACTS", pattern="^(create|none)$")
    planfix_contact_group_id: int | None = Field(default=None, alias="PLANFIX_CONTACT_GROUP_ID")
    planfix_contact_template_id: int | None = Field(default=None, alias="PLANFIX_CONTACT_TEMPLATE_ID")
    # The spec types ``recipients.roles`` as one string, its example sends an array.
    planfix_notify_roles_form: RolesForm = Field(default=RolesForm.ARRAY, alias="PLANFIX_NOTIFY_ROLES_FORM")

    @field_validator("planfix_source_id")
    @classmethod
    def _source_id_is_uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID (Planfix types sourceId as one)") from None

    @field_validator("planfix_notify")
    @classmethod
    def _notify_shape(cls, value: str) -> str:
        items = _split_list(value)
        if items == ["none"]:
            return value
        unknown = [item for item in items if item not in NOTIFY_CHOICES]
        if unknown or not items:
            choices = ", ".join(NOTIFY_CHOICES)
            raise ValueError(f"expected 'none' or a comma-separated list of: {choices}")
        return value

    @property
    def planfix_recipients(self) -> Recipients:
        """The roles Planfix notifies; mentioned people are added per comment when known."""
        roles = tuple(NOTIFY_CHOICES[item] for item in _split_list(self.planfix_notify) if item != "none")
        return Recipients(
            roles=tuple(role for role in roles if role is not None), roles_form=self.planfix_notify_roles_form
        )

    @property
    def planfix_contact_defaults(self) -> ContactDefaults:
        return ContactDefaults(
            group_id=self.planfix_contact_group_id, template_id=self.planfix_contact_template_id
        )

    @property
    def planfix_notify_mentioned(self) -> bool:
        return "mentioned" in _split_list(self.planfix_notify)

    @field_validator("planfix_task_assignees")
    @classmethod
    def _assignees_shape(cls, value: str) -> str:
        for item in _split_list(value):
            kind, _, number = item.partition(":")
            if kind not in ("user", "contact", "group") or not number.isdigit():
                raise ValueError(f"{item!r}: expected a comma-separated list like 'user:5,group:3'")
        return value

    @property
    def planfix_task_defaults(self) -> TaskDefaults:
        return TaskDefaults(
            template_id=self.planfix_task_template_id,
            project_id=self.planfix_task_project_id,
            assignees=tuple(_split_list(self.planfix_task_assignees)),
        )

    @field_validator("planfix_base_url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (e.g. https://<account>.planfix.com/rest/)")
        return value if value.endswith("/") else value + "/"


# PLANFIX_NOTIFY's words and the recipient role each stands for (None: people, not a role).
NOTIFY_CHOICES: dict[str, RecipientRole | None] = {
    "mentioned": None,
    "participants": RecipientRole.PARTICIPANT,
    "assignees": RecipientRole.ASSIGNEE,
    "auditors": RecipientRole.AUDITOR,
    "assigner": RecipientRole.ASSIGNER,
}


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _split_if_text(value: object) -> object:
    return _split_list(value) if isinstance(value, str) else value


# Whole numbers written as a comma-separated list ("1, 2,3"; empty: none), e.g. chat ids.
CommaSeparatedInts = Annotated[frozenset[int], NoDecode, BeforeValidator(_split_if_text)]


S = TypeVar("S", bound=BaseSettings)


def load_settings(settings_class: type[S], service: str) -> S:
    """Build the settings or exit with a message naming each bad variable; no traceback.

    Their secrets are registered for redaction (``bridge_lib.redaction``) before anything logs."""
    try:
        settings = settings_class()
    except ValidationError as error:
        _exit_with_settings_error(error, service)
    register_settings_secrets(settings)
    return settings


def describe_settings_error(error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors():
        if not problem["loc"]:
            # A rule across variables (e.g. two that go together): its message names them.
            lines.append(f"  {problem['msg'].removeprefix('Value error, ')}")
            continue
        name = str(problem["loc"][0])
        what = "is not set" if problem["type"] == "missing" else f"is invalid: {problem['msg']}"
        hint = HOW_TO_GET.get(name)
        lines.append(f"  {name} {what}" + (f"\n      how to get it: {hint}" if hint else ""))
    return lines


def _exit_with_settings_error(error: ValidationError, service: str) -> NoReturn:
    print(f"{service}: cannot start, settings are missing or wrong:", file=sys.stderr)
    for line in describe_settings_error(error):
        print(line, file=sys.stderr)
    print("Set them in the environment or in .env (see .env.example).", file=sys.stderr)
    raise SystemExit(2)
