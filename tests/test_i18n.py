"""Every word the bot says, in Russian and English (``bridge_lib.i18n``): the catalogues hold every
text the services mark, each translated and none fuzzy; no user-facing text is left unmarked;
Russian plurals; the group's language as the BINDING fold and the binder decide it. No NATS."""

from __future__ import annotations

import ast
import re
import shutil
import string
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from babel.messages.catalog import Message
from babel.messages.pofile import read_po

from bridge_cli.render import summary
from bridge_lib.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue_path, normalize_language, translator
from contracts.bindings import GroupLanguage, fold, language_after
from contracts.events import (
    BindingMoved,
    BindingRejectionReason,
    BindRejected,
    GroupLanguageChosen,
    GroupLanguageRejected,
    GroupLanguageRequested,
    PrivateAnswer,
    PrivateCommandAnswered,
    TaskBound,
    TelegramUser,
)
from services.binder.decide import BindRules, announcement, decide
from services.relay.directory import BoundTask
from services.relay.to_planfix.from_telegram_html import combined_header
from services.relay.to_telegram.notices import (
    help_text,
    language_chosen_notice,
    rejected_notice,
    status_text,
)
from services.telegram_gateway.commands import bot_commands
from services.telegram_gateway.group_life import unknown_group_text
from services.telegram_gateway.private_chat import answer_text, person_texts
from tests.support import envelope
from tools.messages import SOURCES, extract

ROOT = Path(__file__).resolve().parent.parent
RU, EN = translator("ru"), translator("en")


def catalogue(language: str) -> Any:
    with catalogue_path(language).open("rb") as po_file:
        return read_po(po_file, locale=language)


def ids(messages: Any) -> set[Any]:
    return {
        message.id if isinstance(message.id, str) else tuple(message.id) for message in messages if message.id
    }


# --- the catalogues --------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_the_services_mark_is_in_the_catalogue_and_nothing_else(language: str) -> None:
    marked, held = ids(extract()), ids(catalogue(language))

    assert marked, "extraction found no text: the check itself is broken"
    assert not marked - held, f"{language}: not in the catalogue (run `make messages`): {marked - held}"
    assert not held - marked, f"{language}: no longer in the code (run `make messages`): {held - marked}"


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _strings(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple | list) else [message.string or ""]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_is_translated_and_none_is_fuzzy(language: str) -> None:
    read = catalogue(language)
    entries = [message for message in read if message.id]

    untranslated = [m.id for m in entries if not all(_strings(m))]
    fuzzy = [m.id for m in entries if m.fuzzy]
    assert not untranslated, f"{language}: untranslated: {untranslated}"
    assert not fuzzy, f"{language}: fuzzy (check and clear the flag): {fuzzy}"
    assert not [(m.id, errors) for m in entries if (errors := list(m.check(read)))]
    # Every translation fills the same {placeholders} as its text, or .format() would fail.
    for message in entries:
        texts = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted = set().union(*map(_placeholders, texts))
        # ngettext's forms all get {count}: a form may use it or not ("1 message", "2 messages").
        optional = {"count"} if message.pluralizable else set()
        for translated in _strings(message):
            assert _placeholders(translated) - wanted - optional == set(), (language, message.id, translated)
            assert wanted - _placeholders(translated) <= optional, (language, message.id, translated)
    assert read.num_plurals == {"ru": 3, "en": 2}[language]


def test_the_catalogues_ship_with_the_package_and_no_mo_file_is_needed() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"locales/*/LC_MESSAGES/*.po"' in pyproject
    assert not list(catalogue_path("ru").parent.glob("*.mo"))
    # Compiled in memory from the .po: a Russian text comes out Russian.
    assert RU.gettext("edited") == "изменено"


# --- nothing said to people is left unmarked -------------------------------------------------------

# Three words of letters in a row: a sentence, not a key, a subject or a URL.
_SENTENCE = re.compile(r"[^\W\d_]{2,}\W*\s+[^\W\d_]{2,}\W*\s+[^\W\d_]{2,}")
_MARKERS = {"gettext", "ngettext", "N_"}
_LOG_CALLS = {"debug", "info", "warning", "error", "exception", "critical"}
# Sentences in the services that no group member reads, each with why. Anything else that looks
# like a sentence and is not marked fails the test below.
NOT_FOR_PEOPLE = {
    # A retry's reason, in logs only (the consumer waits and tries again).
    "services/relay/to_planfix/carrier.py": ("an earlier post of this comment got no answer",),
    # Stored on TaskUnbound.reason: the operator's record of why (bridge bindings, logs).
    "services/binder/decide.py": (
        "/unbind in the group",
        "the group is not bound to task #",
        " (it is bound to ",
    ),
    # `bridge bindings rebuild`: the operator's report.
    "services/binder/rebuild.py": (", no longer suspended", ": no binding event says so"),
    # Startup failures and hints: the operator's log.
    "services/telegram_gateway/app.py": (
        "The bot's webhook is set to another address",
        "Give the bridge a bot of its own",
        "Group Privacy is on, so the bot only sees commands",
        "the bot's webhook is set to another address",
    ),
    # A setting's refusal (bridge_lib.settings.shaped_secret): the operator's terminal at start.
    "services/planfix_gateway/config.py": ("may only contain",),
    # HTTP answers to Planfix's and Telegram's servers, and reasons stored for operators.
    "services/planfix_gateway/reread.py": ("daily budget low (", "daily limit reached"),
    "services/planfix_gateway/webhook.py": (
        "body not received in time",
        "body larger than ",
        "cannot store the notice now, retry later",
        "too many requests, retry later",
    ),
    "services/telegram_gateway/webhook.py": (
        "body too large",
        "body not received in time",
        "not stored, retry later",
    ),
    "services/telegram_gateway/polling.py": ("no handler takes this kind of update",),
    "services/telegram_gateway/undecodable.py": ("aiogram cannot decode this update: ",),
    "services/relay/to_planfix/plan.py": ("message never carried",),
    # Bot API error texts the code recognises, not says.
    "services/relay/to_telegram/courier.py": ("thread not found",),
    # `bridge dlq retry` of a send Telegram refused: the operator's answer and the dead letter's reason.
    "services/relay/to_telegram/__init__.py": ("the relay could not queue it: ",),
    "services/relay/to_telegram/sender.py": (
        "no message set aside under this key",
        "queued again for group ",
    ),
    "services/relay/to_telegram/dead_letters.py": ("refused by Telegram", ": Telegram refused it: "),
    "services/relay/to_telegram/revisions.py": ("message to edit not found", "message to delete not found"),
    # Issue 18: Bot API error texts the task card recognises; the operator's reason on a TaskUnbound.
    "services/relay/to_telegram/task_card.py": ("message to edit not found", "not enough rights"),
    "services/binder/task_commands.py": ("the task is ",),
}


def _unmarked_sentences(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    docstrings = {
        node.body[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or node in docstrings:
            continue
        if not _SENTENCE.search(node.value) or _excused(node, parents):
            continue
        found.append((node.lineno, node.value))
    return found


def _excused(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Marked for translation, or a log line, an exception or a comparison: not said to people."""
    current = node
    while current in parents:
        current = parents[current]
        if isinstance(current, ast.Raise | ast.Compare):
            return True
        if isinstance(current, ast.Call):
            function = current.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in _MARKERS or name in _LOG_CALLS:
                return True
    return False


def test_no_sentence_in_the_services_is_left_unmarked_for_translation() -> None:
    unmarked = []
    for path in sorted(SOURCES.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        allowed = NOT_FOR_PEOPLE.get(relative, ())
        for line, text in _unmarked_sentences(path):
            if not text.startswith(allowed):
                unmarked.append(f"{relative}:{line}: {text[:70]!r}")
    assert not unmarked, "wrap these in gettext/N_ (or list them in NOT_FOR_PEOPLE with why):\n" + "\n".join(
        unmarked
    )


def test_the_check_finds_an_unmarked_sentence(tmp_path: Path) -> None:
    source = tmp_path / "notices.py"
    source.write_text(
        "import structlog\nlog = structlog.get_logger()\n"
        'def said(t):\n    """A docstring is not said."""\n'
        '    log.info("not for people at all")\n'
        '    return t.gettext("Marked for translators") + "Left in plain English"\n',
        encoding="utf-8",
    )
    assert _unmarked_sentences(source) == [(6, "Left in plain English")]


# --- Russian plurals and languages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("count_", "russian", "english"),
    [
        (1, "1 сообщение из Telegram", "1 message from Telegram"),
        (2, "2 сообщения из Telegram", "2 messages from Telegram"),
        (4, "4 сообщения из Telegram", "4 messages from Telegram"),
        (5, "5 сообщений из Telegram", "5 messages from Telegram"),
        (11, "11 сообщений из Telegram", "11 messages from Telegram"),
        (12, "12 сообщений из Telegram", "12 messages from Telegram"),
        (21, "21 сообщение из Telegram", "21 messages from Telegram"),
        (22, "22 сообщения из Telegram", "22 messages from Telegram"),
        (25, "25 сообщений из Telegram", "25 messages from Telegram"),
        (111, "111 сообщений из Telegram", "111 messages from Telegram"),
        (0, "0 сообщений из Telegram", "0 messages from Telegram"),
    ],
)
def test_the_combined_comment_header_counts_in_russian_and_english(
    count_: int, russian: str, english: str
) -> None:
    assert combined_header(count_, RU) == f"<p><i>{russian}</i></p>"
    assert combined_header(count_, EN) == f"<p><i>{english}</i></p>"


@pytest.mark.parametrize(
    ("code", "language"),
    [("ru", "ru"), ("ru-RU", "ru"), ("RU", "ru"), ("en", "en"), ("en-GB", "en"), ("en_US", "en"),
     ("uk", None), ("de", None), ("", None), (None, None)],
)  # fmt: skip
def test_a_telegram_language_code_is_a_language_the_bridge_speaks_or_none(
    code: str | None, language: str | None
) -> None:
    assert normalize_language(code) == language


def test_an_unknown_language_gets_the_default_russian() -> None:
    assert DEFAULT_LANGUAGE == "ru"
    assert translator("de").language == "ru"
    assert translator(None).language == "ru"


def test_the_same_answer_in_both_languages() -> None:
    bound = BoundTask(4821, "Принтер")
    ru = status_text(
        bound, task_url="https://a.planfix.com/task/4821", in_topic=False, bot_reads_all_messages=True, t=RU
    )
    en = status_text(
        bound, task_url="https://a.planfix.com/task/4821", in_topic=False, bot_reads_all_messages=True, t=EN
    )
    assert ru.startswith("🔗 Эта группа привязана к задаче ПланФикса <a href")
    assert en.startswith("🔗 This group is bound to Planfix task <a href")
    assert "/lang <i>ru</i> или <i>en</i> — язык" in help_text("bridge_bot", RU)
    assert bot_commands("ru")["lang"] == "Язык бота в этой группе: /lang ru или /lang en"
    assert bot_commands("en")["task"].startswith("Bind this group to a Planfix task")


def test_a_refusal_is_worded_in_the_groups_language() -> None:
    event = BindRejected(
        **envelope(), chat_id=-1, reason=BindingRejectionReason.NOT_ALLOWED, detail="x",
        task_number=7, refusal="task_already_bound",
    )  # fmt: skip
    assert rejected_notice(event, RU) == (
        "⚠️ Не удалось привязать группу: задача #7 уже привязана к другой группе Telegram "
        "(одна группа на задачу). Сначала напишите /unbind в той группе."
    )
    assert rejected_notice(event, EN).startswith("⚠️ Could not bind this group: task #7 is already bound")


# --- which language a group speaks: the BINDING fold -------------------------------------------------

CHAT = -1001
ANNA = TelegramUser(id=7, full_name="Anna")


def bound_by(language_code: str | None, chat: int = CHAT) -> TaskBound:
    person = TelegramUser(id=7, full_name="Anna", language_code=language_code)
    return TaskBound(
        **envelope(), chat_id=chat, task_number=5, task_title="T", created_task=False, requested_by=person
    )


def chosen(language: str, chat: int = CHAT) -> GroupLanguageChosen:
    return GroupLanguageChosen(**envelope(), chat_id=chat, language=language, chosen_by=ANNA)


@pytest.mark.parametrize(
    ("events", "language"),
    [
        ([], None),
        ([bound_by(None)], None),
        ([bound_by("de")], None),
        ([bound_by("ru-RU")], "ru"),
        ([bound_by("en")], "en"),
        # The first binder's language stays: a later bind by someone else does not change it.
        ([bound_by("en"), bound_by("ru")], "en"),
        # /lang decides, whoever binds afterwards.
        ([bound_by("en"), chosen("ru")], "ru"),
        ([chosen("ru"), bound_by("en")], "ru"),
        ([chosen("ru"), chosen("en")], "en"),
    ],
)
def test_a_groups_language_is_its_lang_else_its_first_binders(
    events: list[Any], language: str | None
) -> None:
    assert fold(events).language_of(CHAT) == language


def test_the_language_follows_the_group_to_its_supergroup_and_other_groups_keep_theirs() -> None:
    moved = BindingMoved(**envelope(), old_chat_id=CHAT, chat_id=-1009, task_number=5, task_title="T")
    bindings = fold([chosen("en"), bound_by("ru", chat=-1002), bound_by("ru"), moved])
    assert bindings.language_of(-1009) == "en"
    assert bindings.language_of(-1002) == "ru"
    assert language_after(GroupLanguage(language="ru", chosen=True), bound_by("en")) == GroupLanguage(
        language="ru", chosen=True
    )


# --- /lang: the binder decides ------------------------------------------------------------------------

RULES = BindRules(account_url="https://acme.planfix.com", language="en")
ANYONE = BindRules(account_url=RULES.account_url, everyone_may_bind=True)
ADMINS_ONLY = ("rejected", "only the group's admins can change its language, sorry")
ADMINS_ONLY_RU = ("rejected", "сменить язык группы могут только её администраторы, извините")
UNSURE = (
    "rejected",
    "Telegram could not tell whether you are an admin of this group; please change the language again later",
)
UNKNOWN = ("rejected", "the bridge speaks ru, en: write /lang ru or /lang en")
UNKNOWN_RU = ("rejected", "мост говорит на языках: ru, en; напишите /lang ru или /lang en")


def lang(language: str, *, admin: bool | None = True) -> GroupLanguageRequested:
    return GroupLanguageRequested(
        **envelope(),
        chat_id=CHAT,
        message_id=3,
        requested_by=ANNA,
        language=language,
        requester_is_admin=admin,
    )


@pytest.mark.parametrize(
    ("request_", "rules", "group_language", "expected"),
    [
        (lang("ru"), RULES, None, ("chosen", None)),
        (lang("en"), RULES, "ru", ("chosen", None)),
        (lang("ru", admin=False), RULES, None, ADMINS_ONLY),
        (lang("ru", admin=False), RULES, "ru", ADMINS_ONLY_RU),
        (lang("ru", admin=None), RULES, None, UNSURE),
        (lang("ru", admin=False), ANYONE, None, ("chosen", None)),
        (lang("fr"), RULES, None, UNKNOWN),
        (lang(""), RULES, "ru", UNKNOWN_RU),
    ],
)  # fmt: skip
def test_lang_is_for_admins_and_languages_the_bridge_speaks(
    request_: GroupLanguageRequested,
    rules: BindRules,
    group_language: str | None,
    expected: tuple[str, str | None],
) -> None:
    outcome = decide(request_, None, None, rules, language=group_language)
    assert (outcome.decided, outcome.detail) == expected
    event, subject, _ = announcement(request_, outcome)
    if outcome.decided == "chosen":
        assert isinstance(event, GroupLanguageChosen)
        assert (event.language, subject) == (request_.language, f"binding.language_chosen.{CHAT}")
    else:
        assert isinstance(event, GroupLanguageRejected)
        assert subject == f"binding.language_rejected.{CHAT}"


def test_the_confirmation_is_said_in_the_language_chosen() -> None:
    assert language_chosen_notice(chosen("en"), EN) == "🌐 From now on I speak English in this group."
    assert language_chosen_notice(chosen("ru"), RU) == "🌐 Теперь я говорю в этой группе на русском языке."


def test_the_cli_names_lang_in_english() -> None:
    assert summary(lang("en")) == "chat -1001: /lang en (Anna)"
    assert summary(chosen("ru")) == "chat -1001 speaks ru from now on"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext's msgfmt is not installed")
@pytest.mark.parametrize("language", LANGUAGES)
def test_msgfmt_accepts_the_catalogue_with_every_entry_translated(language: str, tmp_path: Path) -> None:
    checked = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", str(tmp_path / "b.mo"), str(catalogue_path(language))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    # "127 translated messages." and no "fuzzy" or "untranslated" count beside it.
    assert re.fullmatch(r"\d+ translated messages?\.\n", checked.stderr), checked.stderr


# --- private chats speak the person's language ---------------------------------------------------


def test_a_private_answer_is_in_the_persons_telegram_language_else_the_default() -> None:
    issued = PrivateCommandAnswered(
        **envelope(), answer=PrivateAnswer.CODE_ISSUED, code="K7-42", expires_in_s=15 * 60
    )
    assert answer_text(issued, RU).startswith("Ваш код: <code>K7-42</code>\nВ течение 15 минут напишите")
    assert answer_text(issued, EN).startswith("Your code: <code>K7-42</code>\nWithin 15 minutes, write")
    one_minute = msgspec.structs.replace(issued, expires_in_s=60)
    assert "В течение 1 минуты" in answer_text(one_minute, RU)
    assert "Within 1 minute," in answer_text(one_minute, EN)

    def person(code: str | None) -> Any:
        return SimpleNamespace(from_user=SimpleNamespace(language_code=code))

    assert person_texts(person("ru-RU"), "en").language == "ru"
    assert person_texts(person("de"), "en").language == "en"
    assert person_texts(person(None), "ru").language == "ru"


def test_a_group_the_bot_leaves_is_told_why_in_the_language_of_whoever_added_it() -> None:
    anna = TelegramUser(id=7, full_name="Анна")
    text = unknown_group_text("not_linked", anna, "bridge_bot", RU)
    assert text.startswith("👋 Я переношу сообщения между группами Telegram и задачами ПланФикса")
    assert "здесь Анна не связан(а) с сотрудником ПланФикса. Ухожу." in text
    assert "(https://t.me/bridge_bot?start=link)" in text
    assert unknown_group_text("chat_not_allowed", None, None, EN).startswith("👋 I carry messages")
