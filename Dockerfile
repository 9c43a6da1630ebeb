# syntax=docker/dockerfile:1
#
# One image with all offpeak binaries:
#   offpeak-scheduler  (HTTP API + release loop; `migrate`, operator commands)
#   offpeak-worker     (batch consumer)
#   provider-sim       (the provider simulator, for compose and demos)
#   offpeak-bench      (the pipeline benchmark of BENCHMARKS.md)
#   offpeak-webhook-receiver (records webhook deliveries, for demos)
#   offpeak-client-stack, offpeak-client-codegen (the clients' test stack and
#                      the Rust client's type generator, see clients/)
#
# Build from the repository root (the build context must be the root):
#     docker build -t offpeak:dev .
# Run one binary by naming it as the command (the image's default is the API):
#     docker run --rm -e DATABASE_URL=... offpeak:dev offpeak-scheduler migrate
# Configured only by environment variables; see deploy/README.md.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- build ----
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true

# 1. Dependencies only, cached as long as the manifests and the lock file do
#    not change: the real manifests with stub sources (every lib and [[bin]]
#    target of every workspace member gets an empty file).
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml core/Cargo.toml
COPY store/Cargo.toml store/Cargo.toml
COPY runtime/Cargo.toml runtime/Cargo.toml
COPY scheduler/Cargo.toml scheduler/Cargo.toml
COPY worker/Cargo.toml worker/Cargo.toml
COPY provider-sim/Cargo.toml provider-sim/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
COPY clients/rust/Cargo.toml clients/rust/Cargo.toml
COPY clients/rust/codegen/Cargo.toml clients/rust/codegen/Cargo.toml
RUN set -eux; \
    for crate in core store runtime scheduler worker provider-sim tests clients/rust; do \
        mkdir -p "$crate/src"; : > "$crate/src/lib.rs"; \
    done; \
    mkdir -p tests/src/bin clients/rust/codegen/src; \
    echo 'fn main() {}' > clients/rust/codegen/src/main.rs; \
    echo 'fn main() {}' > tests/src/bin/offpeak-client-stack.rs; \
    echo 'fn main() {}' > scheduler/src/main.rs; \
    echo 'fn main() {}' > worker/src/main.rs; \
    echo 'fn main() {}' > provider-sim/src/main.rs; \
    echo 'fn main() {}' > tests/src/bin/offpeak-bench.rs; \
    echo 'fn main() {}' > tests/src/bin/offpeak-webhook-receiver.rs; \
    cargo build --release --locked --workspace --bins; \
    # Forget the stub builds of our own crates so the real sources are
    # always recompiled below, whatever their timestamps.
    rm -rf target/release/.fingerprint/offpeak-* \
           target/release/deps/offpeak_* target/release/deps/liboffpeak_* \
           target/release/deps/provider_sim-* target/release/deps/offpeak_bench-* \
           target/release/deps/offpeak_webhook_receiver-* \
           target/release/deps/offpeak_client_stack-* target/release/deps/offpeak_client_codegen-*

# 2. The real sources (migrations are embedded by `sqlx::migrate!`).
COPY migrations migrations
COPY core core
COPY store store
COPY runtime runtime
COPY scheduler scheduler
COPY worker worker
COPY provider-sim provider-sim
COPY tests tests
COPY clients/rust clients/rust
RUN set -eux; \
    find core store runtime scheduler worker provider-sim tests clients/rust -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --workspace --bins; \
    mkdir -p /out; \
    cp target/release/offpeak-scheduler target/release/offpeak-worker target/release/provider-sim \
       target/release/offpeak-bench target/release/offpeak-webhook-receiver \
       target/release/offpeak-client-stack target/release/offpeak-client-codegen /out/

# -------------------------------------------------------------- runtime ----
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to the provider (reqwest uses rustls with the system
# roots) and to managed PostgreSQL/RabbitMQ; curl: container health checks;
# tini: PID 1 that forwards SIGTERM and reaps children.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl tini; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 offpeak; \
    useradd --system --uid 10001 --gid offpeak --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin offpeak

COPY --from=build /out/offpeak-scheduler /out/offpeak-worker /out/provider-sim /out/offpeak-bench \
     /out/offpeak-webhook-receiver /out/offpeak-client-stack /out/offpeak-client-codegen /usr/local/bin/

# Defaults suited to a container (the binaries' own defaults listen on
# 127.0.0.1, which is unreachable from outside a container). Everything else
# comes from the environment: DATABASE_URL, AMQP_URL, PROVIDER_URL, ...
ENV OFFPEAK_LISTEN=0.0.0.0:8080 \
    OFFPEAK_WORKER_LISTEN=0.0.0.0:9091 \
    SIM_LISTEN=0.0.0.0:8090 \
    OFFPEAK_LOG_FORMAT=json

# 8080: scheduler API, /healthz, /readyz, /metrics
# 9091: worker /healthz, /readyz, /metrics (exactly: a container has its own IP)
# 8090: provider-sim
EXPOSE 8080 9091 8090

USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["offpeak-scheduler", "serve"]
