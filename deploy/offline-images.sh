#!/usr/bin/env bash
# deploy/offline-images.sh: ONLY for machines WITHOUT access to a container
# registry (no Docker Hub). With registry access you do not need this script:
# `docker build` / `docker compose` pull the official images themselves.
#
# It builds local stand-ins for the base images from Debian packages (a
# Debian mirror is all it needs: debootstrap, then apt-get inside podman), so
# the real Dockerfile and deploy/compose.yaml run unchanged:
#
#   docker.io/library/debian:bookworm-slim     debootstrap --variant=minbase bookworm
#                                              (tagged with the official name, because
#                                              the Dockerfile's FROM asks for it)
#   docker.io/library/rust:<RUST_VERSION>-bookworm
#                                              the above + build-essential, pkg-config,
#                                              libssl-dev, git, curl and THIS HOST's rustup
#                                              toolchain of that version, laid out like the
#                                              official image (RUSTUP_HOME=/usr/local/rustup,
#                                              CARGO_HOME=/usr/local/cargo on PATH)
#   localhost/offpeak-standin-postgres:15      Debian's postgresql-15; entrypoint honours
#                                              POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and
#                                              PGDATA=/var/lib/postgresql/data; pg_isready
#   localhost/offpeak-standin-rabbitmq:3.10-management
#                                              Debian's rabbitmq-server 3.10 with the management
#                                              plugin, guest allowed from other containers,
#                                              logs on stdout; rabbitmq-diagnostics
#
# Every stand-in carries the label offpeak.standin=true (see
# `podman image inspect`). They are NOT the official images: Debian's
# PostgreSQL is 15 (compose's default is 16) and Debian's RabbitMQ 3.10
# (compose's default is 3.13). Use them with compose through:
#
#   POSTGRES_IMAGE=localhost/offpeak-standin-postgres:15 \
#   RABBITMQ_IMAGE=localhost/offpeak-standin-rabbitmq:3.10-management \
#   podman-compose -f deploy/compose.yaml up -d
#
# Usage: deploy/offline-images.sh [--rebuild] [IMAGE...]
#   IMAGE: debian, rust, postgres, rabbitmq (default: all four). Images that
#   already exist are skipped unless --rebuild is given (rebuilding debian
#   does not rebuild the others: name them too).
# Environment: CONTAINER_ENGINE (default podman), OFFPEAK_IMAGES_DIR (scratch
# space, default /var/tmp/offpeak-images; the rootfs lives there, never in the
# repository), DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (default: the host's
# apt sources, else deb.debian.org), RUST_VERSION (default 1.95, as the
# Dockerfile), RUST_TOOLCHAIN_DIR (default: the host's rustup toolchain whose
# rustc reports RUST_VERSION).
# EXTRA_CA_CERTS_DIR (default /usr/local/share/ca-certificates; empty for
# none): *.crt files the rust stand-in trusts, for a host whose egress to
# crates.io goes through a TLS-intercepting proxy (the build stage runs cargo).
# Needs root (debootstrap), debootstrap, podman (or docker) and network
# access to the Debian mirror; crates.io is reached later by the image build.
# Takes a few minutes on 2 cores (debootstrap about 1-2 min, each stand-in
# one apt-get install).
set -euo pipefail

say() { echo "== offline-images: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

engine=${CONTAINER_ENGINE:-podman}
work=${OFFPEAK_IMAGES_DIR:-/var/tmp/offpeak-images}
suite=bookworm
rust_version=${RUST_VERSION:-1.95}

debian_image=docker.io/library/debian:${suite}-slim
rust_image=docker.io/library/rust:${rust_version}-${suite}
postgres_image=localhost/offpeak-standin-postgres:15
rabbitmq_image=localhost/offpeak-standin-rabbitmq:3.10-management
standin_label=offpeak.standin=true

rebuild=0
wanted=()
for arg in "$@"; do
    case $arg in
        --rebuild) rebuild=1 ;;
        debian|rust|postgres|rabbitmq) wanted+=("$arg") ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (see --help)" ;;
    esac
done
[[ ${#wanted[@]} -gt 0 ]] || wanted=(debian rust postgres rabbitmq)
want() { local w; for w in "${wanted[@]}"; do [[ $w == "$1" ]] && return 0; done; return 1; }

command -v "$engine" >/dev/null || die "$engine not found"

# The host's Debian mirror (deb822 .sources or one-line lists), else the default.
apt_uri() { # $1: regex the URI must match, $2: regex it must not match
    { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } \
        | grep -E "$1" | grep -vE "$2" | head -n1 || true
}
mirror=${DEBIAN_MIRROR:-$(apt_uri '/debian/?$' 'security')}
mirror=${mirror:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-$(apt_uri '/debian-security/?$' '^$')}
security_mirror=${security_mirror:-http://deb.debian.org/debian-security}

exists() { "$engine" image exists "$1" 2>/dev/null; }
skip() { # $1: image; true (and says so) when it is there and no rebuild asked
    if [[ $rebuild == 0 ]] && exists "$1"; then say "$1 exists, skipped (--rebuild to rebuild)"; return 0; fi
    return 1
}

mkdir -p "$work"

# ---------------------------------------------------------------- debian ----
build_debian() {
    skip "$debian_image" && return 0
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    [[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
    local rootfs=$work/rootfs-$suite-minbase
    rm -rf "$rootfs"
    say "debootstrap --variant=minbase $suite from $mirror"
    local keyring=()
    [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] \
        && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    debootstrap --variant=minbase "${keyring[@]}" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
    # What the official slim image does: apt sources for the release, its
    # updates and security; no docs, man pages or apt caches kept.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
    echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
           "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
           "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
    : >"$rootfs/etc/hostname"; : >"$rootfs/etc/resolv.conf"
    say "importing $debian_image"
    tar --numeric-owner -C "$rootfs" -c . | "$engine" import --quiet \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL $standin_label" \
        --change "LABEL org.opencontainers.image.description=offline-stand-in-built-by-deploy/offline-images.sh" \
        --message "offpeak offline stand-in: debootstrap --variant=minbase $suite" \
        - "$debian_image" >/dev/null
    rm -rf "$rootfs"
}

# A stand-in from a Containerfile written to $work/<name>/ (context too).
build_from() { # $1: image, $2: context dir, then extra build args
    local image=$1 ctx=$2; shift 2
    say "building $image"
    "$engine" build --pull=never --label "$standin_label" -t "$image" "$@" "$ctx" >"$ctx/build.log" 2>&1 \
        || { tail -n 40 "$ctx/build.log" >&2; die "building $image failed (log: $ctx/build.log)"; }
}

# Keeps policy-rc.d from letting the packages' postinst start services.
no_services='printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d'

# ------------------------------------------------------------------ rust ----
build_rust() {
    skip "$rust_image" && return 0
    exists "$debian_image" || die "$debian_image is missing (build 'debian' first)"
    local tc=${RUST_TOOLCHAIN_DIR:-} d
    if [[ -z $tc ]]; then
        for d in "${RUSTUP_HOME:-$HOME/.rustup}"/toolchains/*/; do
            if "$d/bin/rustc" -V 2>/dev/null | grep -Eq "^rustc ${rust_version//./\\.}([. ]|$)"; then tc=$d; break; fi
        done
    fi
    [[ -n $tc && -x $tc/bin/cargo ]] || die "no host rustup toolchain reports rustc $rust_version (set RUST_TOOLCHAIN_DIR)"
    tc=$(readlink -f "$tc")
    local full; full=$("$tc/bin/rustc" -V | awk '{print $2}')
    local rustup_bin=${RUSTUP_BIN:-$(command -v rustup || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rustup")}
    [[ -x $rustup_bin ]] || die "rustup binary not found (set RUSTUP_BIN)"
    local ctx=$work/rust; mkdir -p "$ctx"
    cp "$rustup_bin" "$ctx/rustup"
    # cargo fetches crates through this host's network: when that needs extra
    # CA certificates (a TLS-intercepting egress proxy), the build stage must
    # trust them too. Public certificates only; none is the default elsewhere.
    rm -rf "$ctx/ca"; mkdir -p "$ctx/ca"
    local ca_dir=${EXTRA_CA_CERTS_DIR-/usr/local/share/ca-certificates}
    if [[ -n $ca_dir ]] && compgen -G "$ca_dir/*.crt" >/dev/null; then
        cp "$ca_dir"/*.crt "$ctx/ca/"
        say "rust stand-in trusts the host's extra CA certificates: $(cd "$ctx/ca" && echo *.crt)"
    fi
    cat >"$ctx/Containerfile" <<EOF
FROM $debian_image
LABEL org.opencontainers.image.description="offpeak offline stand-in for rust:${rust_version}-${suite}: Debian + host toolchain $full"
ENV RUSTUP_HOME=/usr/local/rustup \\
    CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$full
RUN set -eux; apt-get update; \\
    apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev ca-certificates curl git; \\
    rm -rf /var/lib/apt/lists/*
COPY rustup /usr/local/cargo/bin/rustup
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
RUN set -eux; tc=$full-x86_64-unknown-linux-gnu; \\
    mkdir -p "\$RUSTUP_HOME/toolchains/\$tc" "\$RUSTUP_HOME/downloads" "\$RUSTUP_HOME/tmp"; \\
    tar -C /mnt/toolchain --exclude=./share/doc -cf - . | tar -C "\$RUSTUP_HOME/toolchains/\$tc" -xf -; \\
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n\n[overrides]\n' "\$tc" >"\$RUSTUP_HOME/settings.toml"; \\
    cd "\$CARGO_HOME/bin"; \\
    for p in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt rust-gdb rust-lldb; do ln -sf rustup "\$p"; done; \\
    chmod -R a+w "\$RUSTUP_HOME" "\$CARGO_HOME"; \\
    rustup --version; cargo --version; rustc --version
CMD ["bash"]
EOF
    build_from "$rust_image" "$ctx" -v "$tc:/mnt/toolchain:ro"
}

# -------------------------------------------------------------- postgres ----
build_postgres() {
    skip "$postgres_image" && return 0
    exists "$debian_image" || die "$debian_image is missing (build 'debian' first)"
    local ctx=$work/postgres; mkdir -p "$ctx"
    cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# offpeak stand-in for the official postgres image's entrypoint (a subset):
# POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required),
# POSTGRES_DB (default: the user), PGDATA; listens on all interfaces,
# password (scram-sha-256) over TCP, trust on the local socket.
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres {} +
    chmod 700 "$PGDATA"; chmod 2775 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
           --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$db" != postgres ]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
        psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \"$db\""
        pg_ctl -D "$PGDATA" -m fast -w stop
    fi
    echo "stand-in entrypoint: initialised $PGDATA (user $user, database $db)"
fi
exec "$@"
EOF
    chmod +x "$ctx/docker-entrypoint.sh"
    cat >"$ctx/Containerfile" <<EOF
FROM $debian_image
LABEL org.opencontainers.image.description="offpeak offline stand-in for postgres: Debian postgresql-15"
RUN set -eux; $no_services; \\
    mkdir -p /etc/postgresql-common; echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf; \\
    apt-get update; apt-get install -y --no-install-recommends postgresql-15; \\
    rm -f /usr/sbin/policy-rc.d; rm -rf /var/lib/apt/lists/*; \\
    mkdir -p /var/lib/postgresql/data /var/run/postgresql; \\
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql; chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin \\
    PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
    build_from "$postgres_image" "$ctx"
}

# -------------------------------------------------------------- rabbitmq ----
build_rabbitmq() {
    skip "$rabbitmq_image" && return 0
    exists "$debian_image" || die "$debian_image is missing (build 'debian' first)"
    local ctx=$work/rabbitmq; mkdir -p "$ctx"
    cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# offpeak stand-in entrypoint: fixes ownership of the data volume, shares the
# Erlang cookie with root's CLI calls (health checks), runs the broker in the
# foreground as user rabbitmq, logging to stdout.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p /var/lib/rabbitmq /var/log/rabbitmq
    find /var/lib/rabbitmq /var/log/rabbitmq \! -user rabbitmq -exec chown rabbitmq:rabbitmq {} +
    ln -sf /var/lib/rabbitmq/.erlang.cookie /root/.erlang.cookie
    if [ "$1" = rabbitmq-server ]; then
        export HOME=/var/lib/rabbitmq
        cd /var/lib/rabbitmq
        exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
    fi
fi
exec "$@"
EOF
    chmod +x "$ctx/docker-entrypoint.sh"
    cat >"$ctx/Containerfile" <<EOF
FROM $debian_image
LABEL org.opencontainers.image.description="offpeak offline stand-in for rabbitmq:3-management: Debian rabbitmq-server 3.10"
RUN set -eux; $no_services; \\
    apt-get update; apt-get install -y --no-install-recommends rabbitmq-server; \\
    rm -f /usr/sbin/policy-rc.d; rm -rf /var/lib/apt/lists/*; \\
    rabbitmq-plugins enable --offline rabbitmq_management; \\
    rm -f /var/lib/rabbitmq/.erlang.cookie; \\
    printf '%s\n' 'loopback_users.guest = false' 'listeners.tcp.default = 5672' \\
        'management.tcp.port = 15672' 'log.console = true' 'log.file = false' >/etc/rabbitmq/rabbitmq.conf; \\
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["rabbitmq-server"]
EOF
    build_from "$rabbitmq_image" "$ctx"
}

want debian && build_debian
want rust && build_rust
want postgres && build_postgres
want rabbitmq && build_rabbitmq

for img in "$debian_image" "$rust_image" "$postgres_image" "$rabbitmq_image"; do
    if exists "$img"; then
        say "ready: $img ($("$engine" image inspect --format '{{.Size}}' "$img" | awk '{printf "%.0f MB", $1/1e6}'))"
    fi
done
