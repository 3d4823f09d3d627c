"""structlog set-up shared by the services: JSON lines when not on a terminal, pretty on one.

Context (service, correlation id, event type, chat, task) is bound through contextvars so every
line of one handled event carries it. Secrets never reach a log: settings hold them as
``SecretStr``, and every line, ours and the libraries', passes ``bridge_lib.redaction`` last
(after an exception is rendered to text), which cuts registered secrets and secret shapes.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

from bridge_lib.redaction import RedactingFormatter, redact_event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    renderer: Any
    if sys.stderr.isatty():
        # Rendered to text here, so the redaction step below sees the exception's message too.
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.dev.ConsoleRenderer()
    else:
        # No local variables in tracebacks: a frame of an HTTP client may hold a URL with a token.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
    shared.append(redact_event_dict)
    # After the redaction: a time holds no secret, and its colons would send it down the slow path.
    shared.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through stdlib logging; keep their noise down and their format plain.
    plain = f"%(asctime)s {service} %(name)s %(levelname)s %(message)s"
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr, format=plain)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(plain))
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


# msgspec writes a log line several times faster than json.dumps; what it cannot write (an
# object a library logged) is written as its repr, as structlog's own fallback does.
_LINE_ENCODER = msgspec.json.Encoder(enc_hook=repr)


def _json_line(event_dict: Any, **_json_dumps_options: Any) -> str:
    return _LINE_ENCODER.encode(event_dict).decode()
