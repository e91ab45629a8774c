# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# A local secret key on first run; real installations set KIZUNA_SECRET_KEY themselves.
.env:
	@echo "KIZUNA_SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > .env
	@echo "wrote .env with a new KIZUNA_SECRET_KEY"

# With the emulator (no LINE credentials) `kizuna serve` sets the rich menus up itself once it
# answers (the emulator lives inside it), and links the member menu to the members.
run: $(STAMP) .env
	$(BIN)/kizuna migrate
	$(BIN)/kizuna demo
	$(BIN)/kizuna serve

lint: $(STAMP)
	$(BIN)/lint-imports

# pytest exits 5 when it collects nothing: a suite with nothing to run is not a failure.
test: $(STAMP) lint
	$(BIN)/pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# Webhook ingest: with wrk (Debian package `wrk`) when it is installed, else the Python load generator.
bench: $(STAMP)
	@if command -v wrk >/dev/null && command -v taskset >/dev/null; then \
		$(BIN)/python bench/webhook_wrk.py; \
	else \
		echo "wrk not installed (apt-get install wrk): running bench/webhook.py instead"; \
		$(BIN)/python bench/webhook.py; \
	fi

clean:
	rm -rf $(VENV) data .pytest_cache
