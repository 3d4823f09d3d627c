"""How a Planfix comment's files go to Telegram: which send method, which go together.

* By the file's name: pictures go as photos (up to Telegram's 10 MB for photos), MP4 as video,
  MP3/M4A as audio (the formats Telegram's players take), OGG/OGA (Opus: what Planfix keeps of a
  voice message) as voice, everything else as a document.
* Over the Bot API's 50 MB upload limit a file is not sent; the message names it and links
  to the task instead. A file of unknown size is asked about first (``PlanfixClient.get_file``).
* Several files become media groups where Telegram allows it: 2-10 items, photos and videos
  together, documents with documents, audio with audio; a lone item is sent on its own. A voice
  message always goes alone (``sendVoice``: the Bot API groups no voice).
"""

from __future__ import annotations

import enum
import html
from dataclasses import dataclass
from pathlib import PurePosixPath

from bridge_lib.i18n import Translator
from contracts.events import PlanfixFile

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MEDIA_GROUP_MAX = 10

_PHOTO = {".jpg", ".jpeg", ".png", ".webp"}
_VIDEO = {".mp4", ".m4v"}
_AUDIO = {".mp3", ".m4a"}
_VOICE = {".ogg", ".oga"}


class MediaKind(enum.StrEnum):
    PHOTO = "photo"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"

    @property
    def family(self) -> str:
        """Kinds of one family may share a media group."""
        return "visual" if self in (MediaKind.PHOTO, MediaKind.VIDEO) else self.value


@dataclass(frozen=True)
class MediaFile:
    file: PlanfixFile
    kind: MediaKind


def media_kind(file: PlanfixFile) -> MediaKind:
    suffix = PurePosixPath(file.name.lower()).suffix
    if suffix in _PHOTO and (file.size or 0) <= MAX_PHOTO_BYTES:
        return MediaKind.PHOTO
    if suffix in _VIDEO:
        return MediaKind.VIDEO
    if suffix in _AUDIO:
        return MediaKind.AUDIO
    if suffix in _VOICE:
        return MediaKind.VOICE
    return MediaKind.DOCUMENT


def too_large(file: PlanfixFile) -> bool:
    return file.size is not None and file.size > MAX_UPLOAD_BYTES


def media_groups(files: list[PlanfixFile]) -> list[list[MediaFile]]:
    """The sends for these files, in the order their families first appear; each 1-10 items."""
    by_family: dict[str, list[MediaFile]] = {}
    for file in files:
        media = MediaFile(file, media_kind(file))
        by_family.setdefault(media.kind.family, []).append(media)
    groups: list[list[MediaFile]] = []
    for family, members in by_family.items():
        size = 1 if family == MediaKind.VOICE.value else MEDIA_GROUP_MAX
        groups.extend(members[i : i + size] for i in range(0, len(members), size))
    return groups


def as_documents(group: list[MediaFile]) -> list[MediaFile]:
    """The same files as documents: what Telegram takes when it refuses a picture or video."""
    return [MediaFile(media.file, MediaKind.DOCUMENT) for media in group]


def too_large_note(file: PlanfixFile, task_url: str, t: Translator) -> str:
    size_mb = (file.size or 0) / (1024 * 1024)
    name = file.name or t.gettext("file {id}").format(id=file.id)
    return t.gettext(
        "📎 <b>{name}</b> ({size:.1f} MB) is larger than "
        'Telegram lets bots send (50 MB): <a href="{url}">open it in the task</a>.'
    ).format(name=html.escape(name), size=size_mb, url=html.escape(task_url))
