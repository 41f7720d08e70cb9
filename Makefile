# The two set-up commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-pg check docs screenshots bench bench-mo bench-mt bench-scaleout clean

$(STAMP): pyproject.toml
	@echo "make: installing smshost and its dependencies into $(VENV) (pip, quiet); the first run takes about a minute"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)
	@echo "make: $(VENV) is ready"

run: $(STAMP)
	$(BIN)/smshost serve --config ./config --data ./data

# The whole suite on SQLite (the default store; PostgreSQL's own tests start a
# throwaway cluster, tests/pgserver.py), then the store's, outbox's, routing's,
# receipts', recovery's and sinks' tests again with every host on PostgreSQL; each on
# both cores (pytest-xdist).
PG_TESTS := tests/test_ledger.py tests/test_routing.py tests/test_recovery.py \
	tests/test_message_search.py tests/test_purge.py tests/test_acd.py \
	tests/test_interactions.py tests/test_handlers.py tests/test_chat_idle.py \
	tests/brokers/test_webhooks.py tests/outbound/test_sender.py \
	tests/outbound/test_outbound_recovery.py tests/outbound/test_receipts_events.py \
	tests/outbound/test_split_order.py tests/outbound/test_schedule.py \
	tests/outbound/test_callbacks_commit.py tests/outbound/test_send_api.py \
	tests/outbound/test_outbound_edges.py tests/sinks

test: $(STAMP)
	@bash .ci/system-packages || echo "warning: could not install the Debian packages some tests need (see .ci/system-packages)"
	$(BIN)/python -m pytest -n 2
	SMSHOST_TEST_STORE=postgresql $(BIN)/python -m pytest -q -n 2 $(PG_TESTS)

# The same PostgreSQL pass alone.
test-pg: $(STAMP)
	SMSHOST_TEST_STORE=postgresql $(BIN)/python -m pytest -q -n 2 $(PG_TESTS)

# The static checks CI runs before the tests: types (mypy --strict over host/ and
# plugins/), lint (ruff), and the shipped configuration.
check: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check host plugins tests bench
	$(BIN)/smshost check --config ./config

docs: $(STAMP)
	$(BIN)/python -m host.config.docs docs/operators.md

# The pictures of docs/administration.md's walkthrough, taken by its browser test
# (Debian's chromium) into docs/images/.
screenshots: $(STAMP)
	SMSHOST_DOCS_IMAGES=1 $(BIN)/python -m pytest -q tests/browser/test_admin_setup.py

bench: $(STAMP)
	$(BIN)/python bench/store_bench.py

# MO ingest: signed Twilio webhooks into `smshost serve` vs a bare Starlette app (wrk).
# Flags through MO_ARGS, e.g. make bench-mo MO_ARGS="--runs 3 --json /tmp/mo.json"
bench-mo: $(STAMP)
	@bash bench/ensure-wrk.sh
	$(BIN)/python bench/mo_ingest.py $(MO_ARGS)

# MT: POST /api/messages into `smshost serve`, delivered to a fake broker, beside Kannel's
# sendsms -> HTTP SMSC (the shared harness's b-kannel-mt) in the same invocation.
# Flags through MT_ARGS, e.g. make bench-mt MT_ARGS="--runs 3 --json /tmp/mt.json"
bench-mt: $(STAMP)
	@bash bench/ensure-wrk.sh
	$(BIN)/python bench/mt_bench.py $(MT_ARGS)

# Scale-out: SQLite, PostgreSQL, PostgreSQL with --workers 2 under MO ingest, MO end to
# end and MT, CPU per message of smshost and PostgreSQL (needs Debian's postgresql).
# Flags through SCALEOUT_ARGS, e.g. make bench-scaleout SCALEOUT_ARGS="--runs 2"
bench-scaleout: $(STAMP)
	@bash bench/ensure-wrk.sh
	$(BIN)/python bench/scaleout.py $(SCALEOUT_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
