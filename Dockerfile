# Container image of the gateway, and of the demo upstream used by
# docker-compose.yml.
#
#   docker build -t gateway:local .                      # the gateway (last stage, the default)
#   docker build --target demo -t gateway-demo:local .   # examples/demo_upstream.rs
#
# (`make docker-build` runs both.) Stages:
#
#   deps        Cargo.toml + Cargo.lock + patches/ and an empty crate: compiles
#               every dependency once. This layer is rebuilt only when the
#               manifest, the lock file or a patch changes, not when src/ does.
#   build       the real src/ on top: `cargo build --release --locked --bin gateway`
#   demo-build  src/ + examples/: the demo upstream
#   busybox     only a source of a static `sleep` (see the runtime stages)
#   demo        runtime image of the demo upstream (with the gateway binary as its
#               health-check client)
#   gateway     runtime image of the gateway
#
# Pin the toolchain for reproducible builds with --build-arg RUST_VERSION=1.95
# (Cargo.toml's rust-version is the minimum: 1.89).
ARG RUST_VERSION=1
# Runtime base: distroless "cc" = glibc + libgcc_s (all the binary links
# against), CA certificates, tzdata, /etc/passwd with the user nonroot
# (65532); no shell, no package manager. It is Debian 12, the same glibc as
# the bookworm builder.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# The musl busybox is one statically linked file: it runs in distroless.
ARG BUSYBOX_IMAGE=busybox:stable-musl
#
# Base image digests. A tag moves (rust:1-bookworm is rebuilt for every Rust
# release and Debian point release); a digest names one image. Each *_DIGEST
# below is empty (the tag alone: NOT reproducible) or "@sha256:<64 hex>",
# appended to its image; with both, Docker uses the digest and the tag is
# only a label. To pin, on a machine that reaches the registries:
#
#   docker buildx imagetools inspect rust:1.95-bookworm --format '{{.Manifest.Digest}}'
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot --format '{{.Manifest.Digest}}'
#   docker buildx imagetools inspect busybox:stable-musl --format '{{.Manifest.Digest}}'
#
# (the digest of the multi-platform index, valid for every architecture),
# then set the defaults below (and RUST_VERSION to the tag you inspected), or
# pass --build-arg RUST_DIGEST=@sha256:... . scripts/check-dockerfile.py
# (run by `make lint`) warns about every FROM that is not pinned and fails
# on a malformed digest. Renovate or Dependabot can keep pinned digests fresh.
ARG RUST_DIGEST=
ARG RUNTIME_DIGEST=
ARG BUSYBOX_DIGEST=

# --- dependencies, cached -----------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm${RUST_DIGEST} AS deps
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The patched dependencies ([patch.crates-io] in Cargo.toml; patches/README.md).
COPY patches ./patches
# An empty library and main compile all dependencies with the real features
# and profile. Then the artefacts of the placeholder crate itself are deleted:
# otherwise cargo could judge them fresh against the real sources (COPY keeps
# the files' modification times) and ship the empty main.
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && cargo build --release --locked --bin gateway \
 && rm -rf src \
      target/release/gateway target/release/gateway.d \
      target/release/.fingerprint/gateway-* \
      target/release/deps/gateway-* target/release/deps/libgateway-*

# --- the gateway binary -------------------------------------------------------
FROM deps AS build
COPY src ./src
RUN cargo build --release --locked --bin gateway \
 && ./target/release/gateway --version \
 && mkdir -p /out/usr/local/bin \
 && cp target/release/gateway /out/gateway \
 && ln -s /gateway /out/usr/local/bin/gateway

# --- the demo upstream (compose only) ------------------------------------------
FROM deps AS demo-build
COPY src ./src
COPY examples ./examples
# Examples may use dev-dependencies, so these are compiled here (not in deps,
# which the gateway image does not need them for).
RUN cargo build --release --locked --example demo_upstream

FROM ${BUSYBOX_IMAGE}${BUSYBOX_DIGEST} AS busybox

# --- runtime: demo upstream ----------------------------------------------------
FROM ${RUNTIME_IMAGE}${RUNTIME_DIGEST} AS demo
COPY --from=demo-build /src/target/release/examples/demo_upstream /demo_upstream
# The gateway binary as the demo's health-check client (`gateway health
# --url http://127.0.0.1:8081/hello` in docker-compose.yml): distroless has
# no curl.
COPY --from=build /out/gateway /usr/local/bin/gateway
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/demo_upstream"]
CMD ["--listen", "0.0.0.0:8081"]

# --- runtime: gateway (default target) -----------------------------------------
FROM ${RUNTIME_IMAGE}${RUNTIME_DIGEST} AS gateway
LABEL org.opencontainers.image.title="gateway" \
      org.opencontainers.image.description="API gateway on actix-web: reverse proxy, JSON access logs, OAuth2 sessions, rate limiting, Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0"
# Why distroless plus one static `sleep`, and not debian:bookworm-slim:
# the Kubernetes manifests drain with `preStop: exec: ["/bin/sleep", "10"]`
# (the pod keeps serving while endpoint removal reaches every load balancer;
# see docs/DEPLOYMENT.md), and distroless has no /bin/sleep. Busybox picks
# its applet from argv[0], so this one file copied as /bin/sleep is `sleep`.
# That keeps the image at the distroless size (no shell, no apt, no
# coreutils to patch) while the hook works. Clusters on Kubernetes 1.30+ can
# use `lifecycle.preStop.sleep.seconds` instead, which needs nothing in the
# image. To debug inside a pod use `kubectl debug` (an ephemeral container),
# since there is no shell here.
COPY --from=busybox /bin/busybox /bin/sleep
# /gateway, and /usr/local/bin/gateway -> /gateway (on PATH, so
# `kubectl exec POD -- gateway check -c /etc/gateway/production.yaml` works).
COPY --from=build /out/gateway /gateway
COPY --from=build /out/usr/local/bin/ /usr/local/bin/
# Settings files, read-only for the runtime user: production.yaml (the
# default command), default.yaml (the built-in defaults spelled out) and
# local.yaml. Mount a ConfigMap or a directory over /etc/gateway to replace
# them; secrets come from GATEWAY_* environment variables, never from files.
COPY settings/ /etc/gateway/
WORKDIR /
USER 65532:65532
# 8080: proxy listener (server.listen). 9090: admin listener (admin.listen):
# /metrics, /health/live, /health/ready, /health. Keep 9090 off public networks.
EXPOSE 8080 9090
# The gateway handles SIGTERM itself: readiness turns 503 and in-flight
# requests drain for up to server.shutdown_timeout_secs, then it exits 0.
STOPSIGNAL SIGTERM
# Docker's health check: the gateway binary is its own client (`gateway
# health`: GET /health/ready on admin.listen, read from the same settings and
# GATEWAY_* variables as the default command, 0.0.0.0 meaning 127.0.0.1;
# exit 0 on 200, else 1 with the reason, shown by `docker inspect`). Run with
# another --config that moves admin.listen, override it (`docker run
# --health-cmd`, or `healthcheck:` in Compose). Kubernetes ignores it: the pod
# probes /health/live and /health/ready itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/gateway", "health", "--config", "/etc/gateway/production.yaml", "--timeout-ms", "2000"]
ENTRYPOINT ["/gateway"]
CMD ["--config", "/etc/gateway/production.yaml"]
