"""The Bot API's rules for files, media groups and chat members, for ``fake_telegram``.

Pure functions: each takes the parameters as the fake read them and returns what Telegram
would answer, or raises ``BotAPIError`` with Telegram's wording. Limits (Bot API docs, see
``/work/shared/reference/telegram-and-nats.md``): photos up to 10 MB and other files up to
50 MB by multipart upload; a media group holds 2-10 items, photos and videos may mix,
documents and audio only go with their own kind; captions take 1024 UTF-16 units after parsing.
``sendVoice`` takes OGG/Opus, MP3 or M4A and shows it as a voice message (never in a media group);
a file of another format sent with it becomes a document, as Telegram does.
"""

from __future__ import annotations

import hashlib
from typing import Any

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_CAPTION_UTF16 = 1024
MEDIA_GROUP_SIZES = range(2, 11)
FILE_KINDS = ("photo", "document", "audio", "video", "voice")
# What Telegram plays as a voice message (Bot API, sendVoice).
VOICE_SUFFIXES = (".ogg", ".oga", ".opus", ".mp3", ".m4a")
# Which kinds may share one media group.
_GROUP_FAMILY = {"photo": "visual", "video": "visual", "document": "document", "audio": "audio"}


class BotAPIError(Exception):
    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters


def resolve_file(params: dict[str, Any], reference: Any, kind: str) -> dict[str, Any]:
    """The uploaded file a parameter names: a multipart part, or ``attach://<part name>``."""
    if isinstance(reference, str) and reference.startswith("attach://"):
        reference = params.get(reference.removeprefix("attach://"))
    if isinstance(reference, dict) and isinstance(reference.get("data"), bytes):
        data: bytes = reference["data"]
        limit = MAX_PHOTO_BYTES if kind == "photo" else MAX_UPLOAD_BYTES
        if not data:
            raise BotAPIError(400, "Bad Request: file must be non-empty")
        if len(data) > limit:
            raise BotAPIError(413, "Request Entity Too Large")
        return {"name": str(reference.get("filename") or kind), "size": len(data), "data": data}
    if isinstance(reference, str) and reference:
        # A file_id or URL the fake never stored: accept it as Telegram would a known file id.
        return {"name": reference.rsplit("/", 1)[-1], "size": 0, "data": b""}
    raise BotAPIError(400, f"Bad Request: there is no {kind} in the request")


def check_media_group(media: Any) -> list[dict[str, Any]]:
    if not isinstance(media, list) or not all(isinstance(item, dict) for item in media):
        raise BotAPIError(400, "Bad Request: can't parse media JSON object")
    if len(media) not in MEDIA_GROUP_SIZES:
        raise BotAPIError(400, "Bad Request: wrong number of media specified (must be between 2 and 10)")
    kinds = [str(item.get("type")) for item in media]
    if any(kind not in _GROUP_FAMILY for kind in kinds):
        raise BotAPIError(400, "Bad Request: unsupported media type in the group")
    if len({_GROUP_FAMILY[kind] for kind in kinds}) > 1:
        raise BotAPIError(
            400, "Bad Request: documents and audio can be grouped only with other documents and audio"
        )
    return media


def sent_kind(kind: str, file: dict[str, Any]) -> str:
    """What a sent file shows as: a voice message in a format Telegram cannot play is a document."""
    if kind == "voice" and not file["name"].lower().endswith(VOICE_SUFFIXES):
        return "document"
    return kind


def file_object(kind: str, file: dict[str, Any], message_id: int, chat_id: int) -> Any:
    """What a sent message carries for its file: PhotoSize list, Document, Audio or Video."""
    digest = hashlib.sha1(f"{chat_id}:{message_id}:{file['name']}".encode()).hexdigest()[:16]
    base: dict[str, Any] = {
        "file_id": f"{kind}-{digest}",
        "file_unique_id": digest,
        "file_size": file["size"],
    }
    if kind == "photo":
        return [{**base, "width": 800, "height": 600}]
    if kind == "voice":
        # A Voice object has no file name; its MIME type says the format.
        mime = "audio/mpeg" if file["name"].lower().endswith(".mp3") else "audio/ogg"
        return {**base, "duration": 1, "mime_type": mime}
    named = {**base, "file_name": file["name"]}
    if kind == "audio":
        return {**named, "duration": 1}
    if kind == "video":
        return {**named, "width": 640, "height": 360, "duration": 1}
    return named


def chat_member(user: dict[str, Any], status: str) -> dict[str, Any]:
    """A ChatMember object of the given status, with the fields aiogram insists on."""
    if status == "creator":
        return {"status": status, "user": user, "is_anonymous": False}
    if status == "administrator":
        rights = [
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_promote_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_send_welcome_messages",
        ]
        return {
            "status": status,
            "user": user,
            "can_be_edited": False,
            "is_anonymous": False,
            **dict.fromkeys(rights, True),
        }
    if status == "kicked":
        return {"status": status, "user": user, "until_date": 0}
    return {"status": status, "user": user}
