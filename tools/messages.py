"""`make messages`: the bot's texts extracted from the services into the gettext catalogues.

Extraction is Babel's (``pybabel extract -F babel.cfg -k N_`` does the same from the shell): every
``gettext``/``ngettext``/``N_`` call under ``services/``. Each catalogue
(``bridge_lib/locales/<language>/LC_MESSAGES/bridge.po``) is then updated from it: new texts are
added, texts no longer in the code are dropped, a changed text becomes fuzzy (to be checked). The
English catalogue translates each text to itself (the msgids are English), so only Russian needs a
translator; ``tests/test_i18n.py`` fails until every entry is translated and none is fuzzy.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

from bridge_lib.i18n import DOMAIN, LANGUAGES, catalogue_path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "services"
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}
PO_WIDTH = 100
PROJECT = "planfix-telegram-bridge"
# The header's creation date stays put, so a run that changes no text changes no file.
STABLE_DATE = datetime(2026, 12, 1, tzinfo=UTC)


def extract() -> Catalog:
    """The texts the services mark for translation, as a template catalogue."""
    template = Catalog(
        project=PROJECT, version="0.1.0", domain=DOMAIN, fuzzy=False, creation_date=STABLE_DATE
    )
    found = extract_from_dir(
        str(SOURCES), method_map=[("**.py", "python")], keywords=KEYWORDS, strip_comment_tags=True
    )
    for filename, lineno, message, comments, context in found:
        path = (SOURCES / filename).relative_to(ROOT).as_posix()
        template.add(message, None, [(path, lineno)], auto_comments=comments, context=context)
    return template


def read_catalogue(language: str) -> Catalog:
    path = catalogue_path(language)
    if not path.exists():
        return Catalog(locale=language, domain=DOMAIN, fuzzy=False)
    with path.open("rb") as po_file:
        return read_po(po_file, locale=language, domain=DOMAIN)


def updated(language: str, template: Catalog) -> Catalog:
    catalogue = read_catalogue(language)
    catalogue.update(template, no_fuzzy_matching=False)
    catalogue.project, catalogue.version = PROJECT, "0.1.0"
    catalogue.copyright_holder = "the planfix-telegram-bridge authors"
    catalogue.msgid_bugs_address = ""
    catalogue.last_translator = "planfix-telegram-bridge"
    catalogue.language_team = {"ru": "Russian", "en": "English"}.get(language, language)
    catalogue.revision_date = STABLE_DATE
    catalogue.obsolete.clear()
    catalogue.fuzzy = False
    if language == "en":
        for message in catalogue:
            if not message.id:
                continue
            # English is the source language: each text is its own translation.
            message.string = message.id
            message.flags.discard("fuzzy")
    return catalogue


def main() -> int:
    template = extract()
    for language in LANGUAGES:
        catalogue = updated(language, template)
        path = catalogue_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as po_file:
            write_po(po_file, catalogue, width=PO_WIDTH, sort_output=False, include_previous=True)
        missing = [m.id for m in catalogue if m.id and (not _translated(m.string) or m.fuzzy)]
        print(f"{language}: {len(template)} texts, {len(missing)} to translate or check")
    return 0


def _translated(string: object) -> bool:
    if isinstance(string, tuple | list):
        return all(string)
    return bool(string)


if __name__ == "__main__":
    sys.exit(main())
