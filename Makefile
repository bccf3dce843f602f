# qscan - the two commands a new user needs:
#   make demo   run the whole pipeline on embedded defaults with the bundled corpus
#   make test   install what is missing, then run every test (CI runs exactly this)

PYTHON   ?= python3
VENV     ?= .venv
DEMO_DIR ?= demo-data
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed-stamp
CLIENT   := $(VENV)/bin/qscan-queue

.PHONY: install demo test test-fast lint typecheck schema man clean bench bench-anchors bench-discovery

$(STAMP): pyproject.toml scripts/bootstrap.sh scripts/debian-packages.txt
	PYTHON=$(PYTHON) VENV=$(VENV) sh scripts/bootstrap.sh
	touch $(STAMP)

# The native qscan-queue, built with the system compiler and hardening flags (ingest/native/build.sh);
# the Python reference client is installed beside it as qscan-queue-py.
$(CLIENT): ingest/native/qscan_queue.c ingest/native/build.sh $(STAMP)
	sh ingest/native/build.sh $(CLIENT)

install: $(STAMP) $(CLIENT)

demo: install
	$(VENV)/bin/qscan demo --data-dir $(DEMO_DIR)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not integration"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

typecheck: install
	$(VENV)/bin/mypy ingest scanners archive compliance qscan

schema: install
	$(VENV)/bin/qscan schema -o schemas/events.v1.json

man: install
	$(PY) -m qscan.cli.manpages man

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis

bench: install
	$(PY) -m bench.run --docs docs/performance.md
	$(PY) -m bench.cli_help

# Discovery search (docs/discovery.md): indexing rate of the bench corpus into SQLite FTS5, and a
# phrase query with a date filter over DISCOVERY_MESSAGES synthetic indexed messages on SQLite and
# PostgreSQL (when installed), index size per message -> bench/results/discovery.json
DISCOVERY_MESSAGES ?= 1000000
bench-discovery: install
	$(PY) bench/discovery.py --messages $(DISCOVERY_MESSAGES)

# `make bench` plus amavisd-new on the same corpus (not in CI: it installs a Debian package when
# missing; the bench starts its own amavisd with its own configuration, never the system's service)
bench-anchors: install
	@command -v amavisd >/dev/null 2>&1 || [ -x /usr/sbin/amavisd ] || { \
		as_root() { if [ "$$(id -u)" = 0 ]; then "$$@"; else sudo "$$@"; fi; }; \
		as_root apt-get update -qq && \
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq amavisd-new >/dev/null; }
	$(PY) -m bench.run --anchors rspamd,amavisd --docs docs/performance.md
