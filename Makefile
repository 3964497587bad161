# One entry point for developers and CI. Everything runs through uv from the workspace lock.
SHELL := /bin/bash
UV_VERSION := 0.13.9
TOOLS_DIR := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS_DIR)/venv/bin/uv)
RUN := $(UV) run --locked
NAME ?=

CONSOLE_WEB := services/console/web
CONSOLE_WEB_SOURCES := $(CONSOLE_WEB)/package-lock.json $(CONSOLE_WEB)/index.html \
	$(CONSOLE_WEB)/vite.config.ts $(CONSOLE_WEB)/tsconfig.json $(wildcard $(CONSOLE_WEB)/src/*.* $(CONSOLE_WEB)/src/*/*.*)
NODE_TOOLS := tools/node/node_modules/.package-lock.json

.PHONY: help setup up down status run demo infra test test-fast lint format proto asyncapi settings-docs schemas bench clean console-web browser

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(TOOLS_DIR)/venv/bin/uv:
	@command -v python3 >/dev/null || { echo "python3 (>= 3.11) is required" >&2; exit 1; }
	python3 -m venv $(TOOLS_DIR)/venv
	$(TOOLS_DIR)/venv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

setup: $(UV) console-web $(NODE_TOOLS) ## install Python dependencies from uv.lock, build the web console, contract checkers
	$(UV) sync --locked --all-packages

# The AsyncAPI parser and buf (npm, exact versions from the committed lock; cache ~/.npm).
# --ignore-scripts: neither needs an install script, and one dependency's only reports usage.
$(NODE_TOOLS): tools/node/package.json tools/node/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node 20+) is required" >&2; exit 1; }
	npm ci --prefix tools/node --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error

console-web: $(CONSOLE_WEB)/dist/index.html ## build the web console (npm ci + vite; only when its sources changed)

$(CONSOLE_WEB)/dist/index.html: $(CONSOLE_WEB_SOURCES)
	@command -v npm >/dev/null || { echo "npm (Node 20+) is required to build the web console" >&2; exit 1; }
	cd $(CONSOLE_WEB) && npm ci --prefer-offline --no-audit --no-fund --loglevel=error && npm run build --silent
	@touch $@

browser: ## install Debian's chromium for the browser tests when missing (needs root or sudo)
	tools/ensure_chromium.sh

up: setup ## start Kafka + FerretDB and the four services in the background (logs, pids: .devstack/)
	$(RUN) inbox-run up

down: ## stop what `make up` / `make infra` started (services, then Kafka + FerretDB)
	$(RUN) inbox-run down

status: ## what is running where (services and infrastructure)
	$(RUN) inbox-run status

infra: setup ## start only Kafka + FerretDB in the background (provisions them on first run)
	$(RUN) devstack up

run: setup ## start everything in the foreground, wait until healthy, stream logs; Ctrl-C stops it
	$(RUN) inbox-run run

demo: setup ## walk through every PRODUCT.md feature against the running stack (make run/up first)
	$(RUN) inbox-demo

test: setup browser ## set up everything and run all tests on the real stack (browser tests included)
	$(RUN) pytest

test-fast: setup ## unit tests only (no infrastructure)
	$(RUN) pytest -m "not infra and not e2e"

lint: setup ## ruff (all code) + mypy --strict (libs, services, tools, bench; tests: ruff only) + import contracts
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/*/src services/*/src tools bench
	$(RUN) lint-imports

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

proto: setup ## regenerate gRPC stubs from proto/
	$(RUN) python tools/gen_protos.py

asyncapi: setup ## write docs/asyncapi.yaml from the event contracts
	$(RUN) python tools/asyncapi.py docs/asyncapi.yaml

bench: setup ## run benchmarks (all, or NAME=presence|routing|contacts|replies|assignment|tracing)
	$(RUN) python -m bench $(NAME)

settings-docs: setup ## write docs/configuration.md and .env.example from the services' settings
	$(RUN) python tools/settings_docs.py

schemas: setup ## snapshot event schemas after an intentional additive contract change
	$(RUN) python tools/snapshot_schemas.py
