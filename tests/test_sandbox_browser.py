"""Sandbox mode in a real browser: `make run` without credentials, then a person at the page.

The launcher runs as `make run` runs it (BRIDGE_MODE=sandbox, in a directory of its own), and
headless Chromium (Debian's ``chromium``, driven by Playwright) plays the group on the left and
the Planfix task on the right. Each step leaves a screenshot in ``var/test-artifacts/sandbox``.
The steps build on each other (one bridge, one group), so they run in file order.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from devtools import devstack
from sandbox.config import SANDBOX_BOT_TOKEN
from tests.support import REPO_ROOT, eventually

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts" / "sandbox"
READY = "SANDBOX MODE: ready"
# Generous: two cores shared with other test runs.
WAIT_MS = 45_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (`make test` installs Debian's chromium)"
)


class SandboxRun:
    """`make run` in sandbox mode, in its own directory, on free ports."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.log_path = work_dir / "make-run.log"
        self.port = devstack.free_port()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TELEGRAM_", "PLANFIX_", "NATS_", "MONGODB_", "SANDBOX_", "BRIDGE_"))
        }
        self.env.update(
            PYTHONPATH=str(REPO_ROOT),
            BRIDGE_MODE="sandbox",
            SANDBOX_PORT=str(self.port),
            PLANFIX_WEBHOOK_PORT=str(devstack.free_port()),
            NATS_PORT=str(devstack.free_port()),
            MONGODB_PORT=str(devstack.free_port()),
            # Other test runs on the machine may hold the default health ports.
            TELEGRAM_GATEWAY_HEALTH_PORT="0",
            PLANFIX_GATEWAY_HEALTH_PORT="0",
            BINDER_HEALTH_PORT="0",
            RELAY_HEALTH_PORT="0",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        starts = self.log().count(READY)
        with open(self.log_path, "ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devtools.launcher"],
                cwd=self.work_dir,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        eventually(lambda: self.log().count(READY) > starts, timeout_s=90, what="sandbox ready")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def small_png(width: int = 48, height: int = 32) -> bytes:
    """A red rectangle as a PNG, built by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((210, 40, 40)) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxRun]:
    run = SandboxRun(tmp_path_factory.mktemp("sandbox-run"))
    run.start()
    try:
        yield run
    finally:
        code = (
            run.stop() if run.process and run.process.poll() is None else run.process and run.process.poll()
        )
        log = run.log()
        assert code == 0, log[-5000:]
        assert "Traceback" not in log, log[-5000:]
        # The generated webhook secret is kept in var/sandbox and never printed.
        secret = (run.work_dir / "var" / "sandbox" / "planfix-webhook-secret").read_text().strip()
        assert len(secret) >= 16
        assert secret not in log
        assert SANDBOX_BOT_TOKEN.split(":", 1)[1] not in log


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        yield launch(playwright)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])


@pytest.fixture(scope="module")
def page(browser: Browser, sandbox: SandboxRun) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(sandbox.url)
    yield page
    page.close()


def write_as(page: Page, person: str, text: str) -> None:
    page.select_option("#person", person)
    page.fill("#message-text", text)
    page.click("#send")


def snap(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_the_page_opens_on_a_group_the_bot_greeted(page: Page, sandbox: SandboxRun) -> None:
    expect(page.locator("#groups button.active")).to_have_text("Support group")
    expect(page.locator("#messages .bubble.bot").first).to_contain_text("/task")
    expect(page.locator("#task-head")).to_contain_text("Not bound")
    assert "SANDBOX MODE" in sandbox.log()
    assert sandbox.url.rstrip("/") in sandbox.log()
    snap(page, "01-greeted")


def test_an_admin_binds_the_group_with_task(page: Page) -> None:
    write_as(page, "anna", "/task Fix the printer")

    expect(page.locator("#task-head")).to_contain_text("Fix the printer")
    # The confirmation and the task card go out side by side: either may come first.
    expect(page.locator("#messages .bubble.bot", has_text="bound to Planfix task")).to_have_count(1)
    expect(page.locator('#events tr[data-type="binding.task_bound.v1"]')).to_have_count(1)
    snap(page, "02-bound")


def test_a_message_becomes_a_comment_and_events_on_the_timeline(page: Page) -> None:
    write_as(page, "boris", "The printer says PC LOAD LETTER <b>again</b>")

    comment = page.locator("#comments .comment", has_text="PC LOAD LETTER")
    expect(comment).to_contain_text("Boris Petrov")
    # What people write is shown as text, never as markup.
    expect(comment).to_contain_text("<b>again</b>")
    expect(page.locator("#messages .bubble", has_text="PC LOAD LETTER")).to_contain_text("<b>again</b>")
    received = page.locator('#events tr[data-type="telegram.message_received.v1"]', has_text="PC LOAD")
    expect(received).to_have_count(1)
    expect(page.locator('#events tr[data-type="effect.planfix_comment_posted.v1"]')).to_have_count(1)

    received.click()
    expect(page.locator("#event-json")).to_contain_text('"correlation_id"')
    expect(page.locator("#event-json")).to_contain_text("PC LOAD LETTER")
    received.locator(".corr").click()  # follow this message's story
    expect(page.locator('#events tr[data-type="effect.planfix_comment_posted.v1"]')).to_be_visible()
    expect(page.locator('#events tr[data-type="binding.task_bound.v1"]')).to_be_hidden()
    snap(page, "03-message-to-comment")
    page.fill("#filter", "")
    page.dispatch_event("#filter", "input")


def test_a_comment_written_in_the_task_arrives_in_the_group(page: Page) -> None:
    page.select_option("#employee", "user:7")
    page.fill("#comment-text", "Paper is on its way")
    page.click("#add-comment")

    bot_says = page.locator("#messages .bubble.bot", has_text="Paper is on its way")
    expect(bot_says).to_contain_text("Olga Smirnova")
    added = page.locator('#events tr[data-type="planfix.comment_added.v1"]', has_text="Paper is on its way")
    expect(added).to_have_count(1)
    snap(page, "04-comment-to-group")


def test_pictures_from_disk_cross_both_ways(page: Page, tmp_path: Path) -> None:
    picture = tmp_path / "jam.png"
    picture.write_bytes(small_png())
    page.select_option("#person", "chen")
    page.set_input_files("#message-file", str(picture))
    page.fill("#message-text", "This is where it jams")
    page.click("#send")

    expect(page.locator("#messages .bubble", has_text="where it jams").locator("img")).to_be_visible()
    comment = page.locator("#comments .comment", has_text="where it jams")
    expect(comment.locator("img")).to_be_visible()

    page.select_option("#employee", "user:8")
    page.set_input_files("#comment-file", str(picture))
    page.fill("#comment-text", "Same as in the manual")
    page.click("#add-comment")
    bot_says = page.locator("#messages .bubble.bot", has_text="Same as in the manual")
    expect(bot_says.locator("img")).to_be_visible()
    snap(page, "05-pictures")


def test_an_edit_rewrites_the_comment(page: Page) -> None:
    page.locator("#messages .bubble", has_text="PC LOAD LETTER").get_by_role("button", name="edit").click()
    page.fill("#message-text", "The printer says PC LOAD LETTER, fixed by itself")
    page.click("#send")

    expect(page.locator("#comments .comment", has_text="fixed by itself")).to_contain_text("changed")
    expect(page.locator("#messages .bubble", has_text="fixed by itself")).to_contain_text("edited")
    snap(page, "06-edited")


def test_a_forum_topic_binds_on_its_own_and_an_anonymous_admin_is_told_how_to_be_heard(page: Page) -> None:
    page.fill("#new-group input[name=title]", "Office move")
    page.check("#new-group input[name=forum]")
    page.click("#new-group button")
    expect(page.locator("#groups button.active")).to_contain_text("Office move")
    page.fill("#new-topic input[name=name]", "Printers")
    page.click("#new-topic button")
    expect(page.locator("#topics button.active")).to_have_text("Printers")

    write_as(page, "anonymous", "Who am I?")
    expect(page.locator("#messages .bubble.bot", has_text="anonymous")).to_be_visible()
    write_as(page, "anna", "/task 4800")  # the task the sandbox starts with
    expect(page.locator("#task-head")).to_contain_text("Printer on floor 2 is jammed")
    expect(page.locator("#comments")).to_contain_text("paper tray")
    snap(page, "07-forum-topic")

    page.locator("#groups button", has_text="Support group").click()
    expect(page.locator("#task-head")).to_contain_text("Fix the printer")


def test_a_person_links_to_planfix_in_one_click_and_the_page_shows_it(page: Page) -> None:
    chen = page.locator('#people .person[data-person="chen"]')
    expect(chen).to_contain_text("not linked")

    chen.locator("button").click()

    expect(chen).to_contain_text("link_code", timeout=20_000)
    expect(page.locator('#events tr[data-type="people.person_linked.v1"]').last).to_be_visible()
    snap(page, "08-linked")


def test_a_group_bound_from_a_russian_telegram_hears_russian_until_lang_switches_it(page: Page) -> None:
    page.fill("#new-group input[name=title]", "Бухгалтерия")
    page.click("#new-group button")
    expect(page.locator("#groups button.active")).to_contain_text("Бухгалтерия")
    page.select_option("#language", "ru")

    write_as(page, "anna", "/task Сверка счетов")
    # The task card follows the notice at once: look for the notice, not the last bubble.
    expect(page.locator("#messages .bubble.bot", has_text="группа к ней привязана")).to_be_visible()
    expect(page.locator("#comments")).to_contain_text("Привязана к группе Telegram «Бухгалтерия»")
    write_as(page, "anna", "/lang en")
    expect(page.locator("#messages .bubble.bot", has_text="From now on I speak English")).to_be_visible()
    snap(page, "09-languages")

    page.select_option("#language", "en")
    page.locator("#groups button", has_text="Support group").click()
    expect(page.locator("#task-head")).to_contain_text("Fix the printer")


def test_a_restart_keeps_groups_tasks_and_comments_and_the_bridge_keeps_working(
    page: Page, sandbox: SandboxRun
) -> None:
    assert sandbox.stop() == 0
    sandbox.start()
    page.goto(sandbox.url)

    expect(page.locator("#task-head")).to_contain_text("Fix the printer")
    expect(page.locator("#comments")).to_contain_text("fixed by itself")
    expect(page.locator("#messages")).to_contain_text("Paper is on its way")

    # New update ids and comment ids go on from before: the bridge takes both as new.
    write_as(page, "boris", "Still here after the restart")
    expect(page.locator("#comments .comment", has_text="after the restart")).to_be_visible()
    page.fill("#comment-text", "Welcome back")
    page.click("#add-comment")
    expect(page.locator("#messages .bubble.bot", has_text="Welcome back")).to_be_visible()
    snap(page, "10-after-restart")
