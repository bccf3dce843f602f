# qscan - the two commands a new user needs:
#   make demo   run the whole pipeline on embedded defaults with the bundled corpus
#   make test   install what is missing, then run every test (CI runs exactly this)

PYTHON   ?= python3
VENV     ?= .venv
DEMO_DIR ?= demo-data
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint typecheck schema man clean bench

$(STAMP): pyproject.toml scripts/bootstrap.sh scripts/debian-packages.txt
	PYTHON=$(PYTHON) VENV=$(VENV) sh scripts/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

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
