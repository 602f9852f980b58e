# Developer entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
LOCAL_SETTINGS ?= settings/local.yaml
DEMO_LISTEN ?= 127.0.0.1:8081

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the available targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: install
install: ## Fetch the Rust dependencies (offline builds afterwards)
	$(CARGO) fetch --locked

.PHONY: build
build: ## Build the release binary (target/release/gateway)
	$(CARGO) build --release --locked --bin gateway

.PHONY: run-local
run-local: ## Run the gateway with settings/local.yaml in front of the demo upstream
	$(CARGO) build --locked --bin gateway --example demo_upstream
	@set -e; \
	target/debug/examples/demo_upstream --listen $(DEMO_LISTEN) & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	echo "demo upstream on http://$(DEMO_LISTEN); try: curl localhost:8080/demo/hello ; curl localhost:9090/metrics"; \
	target/debug/gateway --config $(LOCAL_SETTINGS)

.PHONY: check-config
check-config: ## Validate the shipped settings files
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/default.yaml
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/local.yaml
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/production.yaml

# The OpenID provider of the auth tests (npm package oidc-provider).
tests/oidc/node_modules: tests/oidc/package.json tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --no-audit --no-fund
	@touch $@

.PHONY: test
test: tests/oidc/node_modules ## Run every test (unit, integration, end-to-end, manifests, monitoring)
	$(CARGO) test --locked --all-targets
	$(MAKE) --no-print-directory check-config
	bash scripts/check-k8s.sh
	bash scripts/check-monitoring.sh

.PHONY: lint
lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

.PHONY: format
format: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: ## Gateway vs NGINX (wrk, A/B rounds), rate-limit cost, route lookup, key memory
	bash bench/run.sh
	bash bench/ratelimit.sh
	$(CARGO) run --release --locked --example route_bench
	$(CARGO) run --release --locked --example ratelimit_keys
