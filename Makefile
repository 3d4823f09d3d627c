# Two commands for a newcomer: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The browser tests (tests/test_sandbox_browser.py) drive Debian's Chromium through Playwright.
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint typecheck pytest install lock clean audit fuzz asyncapi nats-auth bench soak bench-pacing faults faults-full chromium messages

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,embedded]'
	@touch $(STAMP)

# Without credentials: sandbox mode (fake Telegram and Planfix, page at http://127.0.0.1:8080).
run: install
	$(BIN)/python -m devtools.launcher

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Three workers on two cores, whole files each: the fault-injection file (minutes of mostly
# waiting) runs beside the rest, and most end-to-end files wait on the services more than they compute.
pytest: install chromium
	$(BIN)/pytest -n 3 --dist loadfile

# Debian's chromium for the browser tests, installed when missing and we may (root, as in CI);
# otherwise those tests are skipped with a note saying how to get it.
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-color-emoji >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-color-emoji >/dev/null; }; \
	  else \
	    echo "no $(CHROMIUM): browser tests will be skipped (sudo apt-get install chromium)"; \
	  fi; }

test: lint typecheck pytest

# A longer fuzz run than the one in `make test` (Planfix webhook; Telegram updates and webhook);
# prints how many inputs were tried.
fuzz: install
	FUZZ_EXAMPLES=20000 $(BIN)/pytest -q -s \
		tests/test_fuzz_planfix_webhook.py tests/test_fuzz_telegram_updates.py

# Fault injection (tests/faults): kill -9 of each service, a NATS node, outages, three relays, and
# (test_long_faults) hours-long outages, the daily cap, lost and late webhooks, the store, a skewed clock;
# prints sent/delivered/lost/duplicated/reordered per fault. `make test` runs them on 100 messages
# each way; `faults` on 200, `faults-full` on the issue's sizes (1,000 each way, 2,000 over 50 groups).
faults: install
	FAULTS_SCALE=default $(BIN)/pytest -q -s tests/faults

faults-full: install
	FAULTS_SCALE=full $(BIN)/pytest -q -s tests/faults

# Known vulnerabilities in the pinned dependencies (see tools/audit.py and audit-exceptions.toml);
# fails (exit 3 from the script) when the vulnerability service cannot be reached.
audit: install
	$(BIN)/python tools/audit.py

# The event contracts as AsyncAPI (docs/asyncapi/bridge.yaml) and the tables of docs/architecture.md;
# a test fails when either is stale.
asyncapi: install
	$(BIN)/python -m bridge_cli.asyncapi docs/asyncapi
	$(BIN)/python -m bridge_cli.architecture_doc docs/architecture.md

# The NATS users of the compose stacks (deploy/nats/accounts.conf) from contracts/subjects.py;
# a test fails when the file is stale.
nats-auth: install
	$(BIN)/python -m tools.nats_auth

# The bot's texts: extracted from services/ (Babel, as `pybabel extract -F babel.cfg -k N_`) into
# bridge_lib/locales/{ru,en}/LC_MESSAGES/bridge.po; new Russian entries then need translating
# (tests/test_i18n.py fails until none is missing or fuzzy). No .mo: compiled in memory at start.
messages: install
	$(BIN)/python tools/messages.py

# Benchmarks (docs/benchmarks.md): one table, figures in bench/results/latest.json, about 15 minutes.
bench: install
	$(BIN)/python -m bench

# The full 10-minute memory soak at 50 messages/s (make bench runs a 2-minute one).
soak: install
	$(BIN)/python -m bench --mode soak

# Item 4 alone (pacing against Planfix's and Telegram's limits), without make bench's time limit.
bench-pacing: install
	$(BIN)/python -m bench --mode pacing

# Regenerate the lock from the ranges in pyproject.toml (run by a maintainer, then commit constraints.txt).
lock:
	rm -rf /tmp/bridge-lock-venv && $(PYTHON) -m venv /tmp/bridge-lock-venv
	/tmp/bridge-lock-venv/bin/pip install -q -e '.[dev,embedded]'
	/tmp/bridge-lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) var
