"""What the bot says, in the group's language: gettext catalogues read with Babel.

The catalogues are ``bridge_lib/locales/<language>/LC_MESSAGES/bridge.po`` (extracted from the
services with ``make messages``). They are compiled in memory the first time a language is asked
for, so a fresh clone needs no build step and no ``.mo`` file is committed. The msgids are the
English texts; ``en`` translates each to itself so a missing entry shows up in the tests.

Texts are marked with ``gettext``/``ngettext`` (or ``N_`` for a constant translated where it is
used) and formatted with ``str.format`` after translation, so a translator may move the
placeholders. Log messages and the CLI's operator messages stay English.
"""

from __future__ import annotations

import functools
import gettext as gettext_module
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN: Final = "bridge"
LOCALES_DIR: Final = Path(__file__).with_name("locales")
LANGUAGES: Final = ("ru", "en")
DEFAULT_LANGUAGE: Final = "ru"


def N_(message: str) -> str:
    """Mark a constant for extraction; it is translated where it is used."""
    return message


def normalize_language(code: str | None) -> str | None:
    """A supported language from a Telegram ``language_code`` ("ru", "en-GB", "RU"), else None."""
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def catalogue_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@dataclass(frozen=True, slots=True)
class Translator:
    """One language's texts: ``gettext`` and ``ngettext`` as the standard library has them."""

    language: str
    _translations: gettext_module.NullTranslations

    def gettext(self, message: str) -> str:
        return self._translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._translations.ngettext(singular, plural, n)


@functools.cache
def translator(language: str | None = None) -> Translator:
    """The translator for ``language`` (normalized; an unsupported one gets ``DEFAULT_LANGUAGE``)."""
    chosen = normalize_language(language) or DEFAULT_LANGUAGE
    with catalogue_path(chosen).open("rb") as po_file:
        catalogue = read_po(po_file, locale=chosen, domain=DOMAIN)
    compiled = io.BytesIO()
    # Fuzzy entries are left out, as msgfmt does: a fuzzy text is a guess, not a translation.
    write_mo(compiled, catalogue, use_fuzzy=False)
    compiled.seek(0)
    return Translator(chosen, gettext_module.GNUTranslations(compiled))


def language_or_default(language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """``language`` when supported, else ``default`` (itself normalized, else ``DEFAULT_LANGUAGE``)."""
    return normalize_language(language) or normalize_language(default) or DEFAULT_LANGUAGE
