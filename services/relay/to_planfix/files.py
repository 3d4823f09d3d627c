"""A Telegram file into Planfix: bytes downloaded through the Bot API (``getFile``) and uploaded
with multipart; a Telegram file URL carries the bot token and never goes to Planfix. A file over
the Bot API's 20 MB download limit, or over the Planfix plan's limit, becomes a note instead."""

from __future__ import annotations

import io

import aiohttp
import structlog
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bridge_lib.eventbus import TransientFailure
from bridge_lib.i18n import Translator
from bridge_lib.planfix import FileTooLarge, PlanfixClient
from contracts.events import TelegramAttachment
from services.relay.to_planfix.from_telegram_html import (
    too_big_for_planfix_note,
    too_big_for_telegram_note,
    unavailable_note,
)
from services.relay.to_planfix.ledger import Upload

log = structlog.get_logger("relay.to_planfix")

# Bots may download at most this much through the Bot API's getFile.
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
# After this many deliveries a file that cannot be downloaded is named in the comment instead.
FILE_ATTEMPTS = 5
# A file URL answering these will not start working: named in the comment at once.
GONE_STATUSES = frozenset({400, 401, 403, 404, 410})


class FileUploader:
    def __init__(self, *, bot: Bot, planfix: PlanfixClient) -> None:
        self._bot = bot
        self._planfix = planfix

    async def upload(self, attachment: TelegramAttachment, attempts: int, t: Translator) -> Upload:
        """The file uploaded, or a note in the group's language (``t``) saying why it is not."""
        if attachment.file_size is not None and attachment.file_size > TELEGRAM_DOWNLOAD_LIMIT:
            log.info("file_too_big_for_telegram", kind=attachment.kind, size=attachment.file_size)
            return Upload(note=too_big_for_telegram_note(attachment, t))
        try:
            data = await self._download(attachment)
        except TelegramBadRequest as error:
            if "too big" in str(error).lower():
                return Upload(note=too_big_for_telegram_note(attachment, t))
            log.warning("file_not_downloadable", kind=attachment.kind, error=str(error))
            return Upload(note=unavailable_note(attachment, t))
        except aiohttp.ClientResponseError as error:
            # Its message and request_info carry the file URL, and in it the bot token: only the
            # status goes on, and the error itself is not chained into a traceback.
            status = error.status
            if status in GONE_STATUSES or attempts >= FILE_ATTEMPTS:
                log.warning("file_download_gave_up", kind=attachment.kind, http_status=status)
                return Upload(note=unavailable_note(attachment, t))
            raise TransientFailure(f"Telegram file download failed: HTTP {status}") from None
        except (
            TelegramNetworkError,
            TelegramServerError,
            TelegramRetryAfter,
            aiohttp.ClientError,
            OSError,
        ) as error:
            if attempts >= FILE_ATTEMPTS:
                log.warning("file_download_gave_up", kind=attachment.kind, error=type(error).__name__)
                return Upload(note=unavailable_note(attachment, t))
            raise TransientFailure(f"Telegram file download failed: {type(error).__name__}") from None
        try:
            file_id = await self._planfix.upload_file(
                name=attachment.file_name or attachment.kind, data=data, content_type=attachment.mime_type
            )
        except FileTooLarge:
            log.info("file_too_big_for_planfix", kind=attachment.kind, size=len(data))
            return Upload(note=too_big_for_planfix_note(attachment, t))
        log.info("file_uploaded", kind=attachment.kind, size=len(data), file_id=file_id)
        return Upload(file_id=file_id)

    async def _download(self, attachment: TelegramAttachment) -> bytes:
        telegram_file = await self._bot.get_file(attachment.file_id)
        if telegram_file.file_path is None:
            raise TelegramBadRequest(method=None, message="file has no path")  # type: ignore[arg-type]
        buffer = io.BytesIO()
        await self._bot.download_file(telegram_file.file_path, destination=buffer)
        return buffer.getvalue()
