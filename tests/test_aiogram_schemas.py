"""aiogram's schemas are built on first use (bridge_lib/aiogram_schemas.py), and every one still builds;
the services do not load the CLI's rich/pygments/click (bridge_lib/lean_imports.py).

Run in a fresh interpreter: the test process may have imported aiogram before the tuning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json
    import sys
    from bridge_lib import lean_imports
    lean_imports.install()  # as every service's __main__ does first
    import aiogram
    import services.relay.app
    import services.telegram_gateway.app
    from aiogram import methods, types
    from aiogram.methods.base import Response

    cli_only = [name for name in ("rich", "pygments", "click") if name in sys.modules]
    report = {"cli_only": cli_only, "complete_after_import": [
        name for name in ("Update", "Message", "Chat") if getattr(types, name).__pydantic_complete__
    ] + [name for name in ("SendMessage", "SendMediaGroup") if getattr(methods, name).__pydantic_complete__]}

    update = types.Update.model_validate({
        "update_id": 1,
        "message": {
            "message_id": 5, "date": 1700000000,
            "chat": {"id": -100, "type": "supergroup", "title": "Group"},
            "from": {"id": 7, "is_bot": False, "first_name": "Ann"},
            "caption": "look",
            "photo": [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}],
            "reply_to_message": {"message_id": 4, "date": 1700000000,
                                 "chat": {"id": -100, "type": "supergroup"}, "text": "earlier"},
        },
    })
    report["photo"] = update.message.photo[0].file_id
    report["reply_text"] = update.message.reply_to_message.text
    sent = Response[types.Message].model_validate(
        {"ok": True, "result": {"message_id": 9, "date": 1700000000, "chat": {"id": -100, "type": "group"}}}
    )
    report["sent_chat"] = sent.result.chat.id
    report["media_group"] = len(methods.SendMediaGroup(
        chat_id=-100, media=[{"type": "photo", "media": "a"}, {"type": "photo", "media": "b"}]
    ).media)

    unbuilt = []
    for module in (types, methods):
        for name in module.__all__:
            model = getattr(module, name)
            if hasattr(model, "model_rebuild") and model.model_rebuild(force=True) is False:
                unbuilt.append(name)
    report["unbuilt"] = unbuilt
    print(json.dumps(report))
    """
)


def test_aiogram_types_are_built_on_first_use_and_all_of_them_build() -> None:
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)

    assert report["complete_after_import"] == []
    assert report["cli_only"] == [], "the services do not load the CLI's rendering libraries"
    assert report["photo"] == "p"
    assert report["reply_text"] == "earlier"
    assert report["sent_chat"] == -100
    assert report["media_group"] == 2
    assert report["unbuilt"] == []
