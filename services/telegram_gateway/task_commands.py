"""``/done``, ``/deadline <date>`` and ``/assign @user`` in a group, as ``TaskCommandRequested``
(issue 18): the binder decides who may, makes the change in Planfix and answers in the group.
The gateway carries the command as written and whether the sender is the group's admin.
"""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, Update

from bridge_lib.i18n import N_
from contracts import subjects
from contracts.events import TaskCommand, TaskCommandRequested, telegram_task_command_key
from services.telegram_gateway import filters
from services.telegram_gateway.commands import command_request, requester_is_admin
from services.telegram_gateway.record import Record

# For Telegram's command menu (setMyCommands), beside ``commands.BOT_COMMANDS``.
TASK_BOT_COMMANDS = {
    "done": N_("Mark the bound task completed"),
    "deadline": N_("Set the task's deadline: /deadline 15.12, /deadline Dec 15"),
    "assign": N_("Make a linked Planfix employee an assignee: /assign @user"),
}


async def on_task_command(
    message: Message, command: CommandObject, event_update: Update, record: Record, bot: Bot
) -> None:
    task_command = TaskCommand(command.command.lower())
    key = telegram_task_command_key(message.chat.id, message.message_id)
    if (request := command_request(message, event_update, key)) is None:
        return
    event = TaskCommandRequested(
        **request,
        command=task_command,
        argument=(command.args or "").strip()[:200],
        requester_is_admin=await requester_is_admin(bot, message),
    )
    await record(event, subject=subjects.telegram_task_command_requested(message.chat.id), key=key)


def build_task_commands_router() -> Router:
    router = Router(name="telegram_gateway.task_commands")
    for command in TaskCommand:
        router.message.register(
            on_task_command,
            filters.in_group_chat,
            filters.has_text,
            Command(command.value, ignore_case=True),
        )
    return router
