"""Doubles for handler tests that run in memory, in milliseconds: a Bot API session that records
each call (after aiogram's tests/mocked_bot.py), a publisher that keeps what it was given, and a
clock that moves when slept on."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import AsyncGenerator
from typing import Any, NamedTuple, TypeVar

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import ResponseParameters, User

from contracts.events import Event

TOKEN = "42:IN-MEMORY"
M = TypeVar("M", bound=TelegramMethod[Any])


class UnexpectedCall(AssertionError):
    """A handler called the Bot API where the test gave no answer."""


class RecordingSession(BaseSession):
    """Records every outgoing Bot API call; answers each with what the test queued for its method."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[TelegramMethod[Any]] = []
        self._answers: defaultdict[type[TelegramMethod[Any]], deque[tuple[int, str]]] = defaultdict(deque)

    def answer(
        self,
        method: type[TelegramMethod[TelegramType]],
        result: Any = None,
        *,
        error_code: int = 200,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Queue the answer to the next call of ``method`` (an error when ``error_code`` is not 200)."""
        response = Response[Any](
            ok=error_code == 200,
            result=result,
            error_code=error_code,
            description=description,
            parameters=ResponseParameters(retry_after=retry_after) if retry_after else None,
        )
        self._answers[method].append((error_code, response.model_dump_json(exclude_none=True)))

    def calls_of(self, method: type[M]) -> list[M]:
        return [call for call in self.calls if isinstance(call, method)]

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - BaseSession's signature
    ) -> TelegramType:
        self.calls.append(method)
        answers = self._answers[type(method)]
        status, content = answers.popleft() if answers else self.unasked(method)
        # aiogram's own checks: an error answer raises the typed error a real one would.
        response = self.check_response(bot=bot, method=method, status_code=status, content=content)
        return response.result  # type: ignore[return-value]

    def unasked(self, method: TelegramMethod[Any]) -> tuple[int, str]:
        """The answer to a call the test queued none for (its HTTP status and body): none here."""
        raise UnexpectedCall(f"no answer queued for {type(method).__name__}")

    async def close(self) -> None:
        pass

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109 - BaseSession's signature
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:  # pragma: no cover - no handler downloads
        yield b""


def recording_bot(me: User) -> tuple[Bot, RecordingSession]:
    """A bot on a recording session that already knows who it is (the gateway asks getMe at start)."""
    session = RecordingSession()
    bot = Bot(TOKEN, session=session)
    bot._me = me  # as aiogram's MockedBot does: Bot.me() answers from it
    return bot, session


class Published(NamedTuple):
    event: Event
    subject: str
    msg_id: str


class RecordingPublisher:
    """Keeps each event it is asked to store; a repeated message id is a duplicate, as in JetStream."""

    def __init__(self, *, failing: bool = False) -> None:
        self.published: list[Published] = []
        self._failing = failing

    async def publish(self, event: Event, *, subject: str, msg_id: str) -> bool:
        if self._failing:
            raise ConnectionError("NATS is away")
        duplicate = any(each.msg_id == msg_id for each in self.published)
        self.published.append(Published(event, subject, msg_id))
        return not duplicate

    @property
    def stored(self) -> list[Published]:
        """What the stream would hold: each message id once."""
        seen: set[str] = set()
        kept = []
        for each in self.published:
            if each.msg_id not in seen:
                seen.add(each.msg_id)
                kept.append(each)
        return kept


class Clock:
    """Time that moves only when the code under test sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds
