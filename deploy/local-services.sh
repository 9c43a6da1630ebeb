#!/usr/bin/env bash
# deploy/local-services.sh: find or start the PostgreSQL and RabbitMQ that
# offpeak needs on this machine, installing them from Debian packages if
# they are missing.
#
# Sourced by tests/run.sh and deploy/demo.sh:
#
#     source deploy/local-services.sh
#     ensure_postgres      # DATABASE_URL's server accepts logins
#     ensure_rabbitmq      # AMQP_URL's broker speaks AMQP
#     ensure_browser DIR   # node, npm, chromium, and `npm ci` in DIR (tests/run.sh)
#
# or run on its own, which ensures both and prints the variables to export:
#
#     eval "$(deploy/local-services.sh)"
#     deploy/local-services.sh postgres|rabbitmq|env
#
# What it does, for each service:
#   1. If it is reachable at the URL, nothing (and prints nothing).
#   2. If the URL was set by you (DATABASE_URL / AMQP_URL differing from the
#      defaults below), it installs and starts nothing: it waits for the
#      service (up to OFFPEAK_SERVICE_TIMEOUT seconds) and fails if it does
#      not come.
#   3. Otherwise, for a local URL: `apt-get install -y postgresql` /
#      `rabbitmq-server` if not installed, start it (`service ... start`
#      under systemd; `pg_ctlcluster --skip-systemctl-redirect` /
#      `rabbitmq-server -detached` without, e.g. in containers), and wait.
#   Installing and starting need root: it uses sudo when not root.
#
# PostgreSQL authentication. The default URL logs in as `postgres` with the
# password `postgres` over TCP. Where pg_hba.conf trusts 127.0.0.1 (as on
# many dev machines) the password is simply ignored. A fresh Debian install
# instead asks TCP clients for a password (scram-sha-256) and `postgres` has
# none; only then, and only for the default URL, this script sets that
# password once through the local socket (peer auth as the `postgres` OS
# user): `ALTER USER postgres PASSWORD 'postgres'`. That is one SQL statement
# instead of an edit of pg_hba.conf: it changes no authentication rule for any
# other user or address, needs no restart, and the server still listens on
# localhost only. Use your own DATABASE_URL to avoid it.
#
# Safe under `set -euo pipefail`; when sourced it does not change the
# caller's shell options. Messages go to stderr; stdout stays clean.

: "${OFFPEAK_DEFAULT_DATABASE_URL:=postgres://postgres:postgres@127.0.0.1:5432/offpeak}"
: "${OFFPEAK_DEFAULT_AMQP_URL:=amqp://guest:guest@127.0.0.1:5672/%2f}"
# Seconds to wait for a service to become reachable after starting it.
: "${OFFPEAK_SERVICE_TIMEOUT:=90}"

# A URL is "yours" when it is set and differs from our default: then we only
# wait for the service, we never install or start anything for it.
if [[ -n "${DATABASE_URL:-}" && "${DATABASE_URL}" != "$OFFPEAK_DEFAULT_DATABASE_URL" ]]; then
    _OP_DB_URL_GIVEN=1
else
    _OP_DB_URL_GIVEN=""
fi
if [[ -n "${AMQP_URL:-}" && "${AMQP_URL}" != "$OFFPEAK_DEFAULT_AMQP_URL" ]]; then
    _OP_AMQP_URL_GIVEN=1
else
    _OP_AMQP_URL_GIVEN=""
fi
export DATABASE_URL="${DATABASE_URL:-$OFFPEAK_DEFAULT_DATABASE_URL}"
export AMQP_URL="${AMQP_URL:-$OFFPEAK_DEFAULT_AMQP_URL}"
_OP_APT_UPDATED=""

_op_say() { printf 'local-services: %s\n' "$*" >&2; }
_op_err() { printf 'local-services: error: %s\n' "$*" >&2; }

# Runs a command as root: directly when root, through sudo otherwise.
_op_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _op_err "this needs root and sudo is not installed: $*"
        return 1
    fi
}

# Runs a command as the `postgres` OS user (from /, which it can read).
_op_as_postgres() {
    if [[ "$(id -u)" == 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            local q
            q=$(printf '%q ' "$@")
            (cd / && su postgres -s /bin/sh -c "$q")
        fi
    elif command -v sudo >/dev/null 2>&1; then
        (cd / && sudo -u postgres "$@")
    else
        _op_err "cannot run as the postgres user (not root, no sudo): $*"
        return 1
    fi
}

# apt_install PACKAGE...: apt-get update (once per shell) and install.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        _op_err "apt-get not found: install $* with your package manager, or point DATABASE_URL / AMQP_URL at running services"
        return 1
    fi
    if [[ -z "$_OP_APT_UPDATED" ]]; then
        _op_say "apt-get update"
        _op_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || {
            _op_err "apt-get update failed"
            return 1
        }
        _OP_APT_UPDATED=1
    fi
    _op_say "installing $* (apt-get)"
    _op_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 || {
        _op_err "apt-get install $* failed"
        return 1
    }
}

# ensure_commands CMD[:PACKAGE]...: installs the package of each missing
# command (the package defaults to the command's name).
ensure_commands() {
    local spec cmd pkg missing=()
    for spec in "$@"; do
        cmd=${spec%%:*}
        pkg=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    _op_say "missing commands; installing ${missing[*]}"
    apt_install "${missing[@]}"
}

# ensure_build_tools: a C compiler and linker for cargo (the `ring` crate
# compiles C, and rustc links with `cc`).
ensure_build_tools() {
    command -v cc >/dev/null 2>&1 && return 0
    _op_say "no C compiler (cc) found; cargo needs one to link"
    apt_install gcc libc6-dev
}

# ensure_browser DIR: what the dashboard's browser test
# (tests/tests/api/ui_browser.rs) needs: Node.js 18+ and npm, Debian's chromium
# (playwright-core drives /usr/bin/chromium, or $CHROMIUM; it never
# downloads a browser of its own), and the test's npm packages in DIR,
# installed with `npm ci` from the committed package-lock.json when they are
# missing or older than it.
ensure_browser() {
    local dir=$1 missing=()
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    [[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || missing+=(chromium)
    if [[ ${#missing[@]} -gt 0 ]]; then
        _op_say "the dashboard's browser test needs ${missing[*]}"
        apt_install "${missing[@]}" || return 1
    fi
    if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
        _op_err "the browser test needs Node.js 18 or newer; found $(node --version)"
        return 1
    fi
    if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
        _op_say "npm ci in $dir"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || {
            _op_err "npm ci in $dir failed"
            return 1
        }
    fi
}

# url_host_port URL DEFAULT_PORT: prints "HOST PORT" of a
# scheme://[user[:pass]@]host[:port][/path][?query] URL.
url_host_port() {
    local url=$1 default_port=$2 rest host port
    rest=${url#*://}
    rest=${rest%%[/?#]*}
    rest=${rest##*@}
    if [[ "$rest" == \[* ]]; then # [IPv6]:port
        host=${rest%%]*}
        host=${host#[}
        port=${rest##*]}
        port=${port#:}
    else
        host=${rest%%:*}
        port=${rest#"$host"}
        port=${port#:}
    fi
    printf '%s %s\n' "${host:-127.0.0.1}" "${port:-$default_port}"
}

# pg_url_with_db URL DB: the same server URL with another database name,
# e.g. `pg_url_with_db "$DATABASE_URL" postgres` for the maintenance database.
pg_url_with_db() {
    local url=$1 db=$2 scheme rest auth query=""
    scheme=${url%%://*}
    rest=${url#*://}
    auth=${rest%%[/?]*}
    if [[ "$rest" == *\?* ]]; then
        query="?${rest#*\?}"
    fi
    printf '%s://%s/%s%s\n' "$scheme" "$auth" "$db" "$query"
}

_op_is_local() {
    case "$1" in
        127.* | localhost | ::1 | 0.0.0.0) return 0 ;;
        *) return 1 ;;
    esac
}

_op_systemd() { [[ -d /run/systemd/system ]]; }

# Can a TCP connection to HOST PORT be opened (within 3 s)?
tcp_open() {
    # shellcheck disable=SC2016 # $0 and $1 expand in the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

_op_pg_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2" -t 3
    else
        tcp_open "$1" "$2"
    fi
}

# Does HOST PORT answer the AMQP 0-9-1 protocol header with a frame? (A
# broker still booting may hold the port without answering.)
_op_amqp_up() {
    # shellcheck disable=SC2016 # $0 and $1 expand in the inner bash
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        [[ "$(head -c 1 <&3 | od -An -tx1 | tr -d " \n")" == 01 ]]' "$1" "$2" 2>/dev/null
}

# _op_wait WHAT SECONDS CHECK ARGS...: polls CHECK every second.
_op_wait() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs; i++)); do
        "$@" && return 0
        sleep 1
    done
    "$@" && return 0
    _op_err "$what is still not reachable after ${secs}s"
    return 1
}

# The cluster (VERSION NAME) that Debian's postgresql-common runs on PORT;
# creates the default cluster when there is none at all.
_op_pg_cluster() {
    local port=$1 found ver
    found=$(pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p { print $1, $2; exit }')
    if [[ -n "$found" ]]; then
        echo "$found"
        return 0
    fi
    if [[ -n "$(pg_lsclusters -h 2>/dev/null)" ]]; then
        _op_err "PostgreSQL is installed but no cluster uses port $port:"
        pg_lsclusters >&2 || true
        return 1
    fi
    # shellcheck disable=SC2012 # version directories: plain names
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$ver" ]] || {
        _op_err "no PostgreSQL server found in /usr/lib/postgresql"
        return 1
    }
    _op_say "creating PostgreSQL cluster $ver/main on port $port"
    _op_root pg_createcluster --port "$port" "$ver" main >&2 || return 1
    echo "$ver main"
}

_op_pg_start() {
    local port=$1 cluster ver name
    cluster=$(_op_pg_cluster "$port") || return 1
    read -r ver name <<<"$cluster"
    _op_say "starting PostgreSQL $ver/$name"
    if _op_systemd; then
        _op_root service postgresql start >&2 || true
    else
        _op_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 || true
    fi
    if ! _op_wait "PostgreSQL on port $port" "$OFFPEAK_SERVICE_TIMEOUT" _op_pg_up 127.0.0.1 "$port"; then
        _op_say "last lines of /var/log/postgresql/postgresql-$ver-$name.log:"
        tail -n 20 "/var/log/postgresql/postgresql-$ver-$name.log" >&2 2>/dev/null || true
        return 1
    fi
}

# Logs in with DATABASE_URL (to the `postgres` database, which always
# exists); for the default URL, gives `postgres` its password if the server
# asks for one (see the header).
_op_pg_login() {
    local port=$1 url out
    command -v psql >/dev/null 2>&1 || return 0
    url=$(pg_url_with_db "$DATABASE_URL" postgres)
    if out=$(PGCONNECT_TIMEOUT=5 psql "$url" -XAtqc 'select 1' 2>&1); then
        return 0
    fi
    if [[ -n "$_OP_DB_URL_GIVEN" ]]; then
        _op_say "warning: PostgreSQL is up but DATABASE_URL does not log in: $out"
        return 0
    fi
    case "$out" in
        *password* | *authentication*) ;;
        *)
            _op_err "PostgreSQL is up but logging in with $DATABASE_URL fails: $out"
            return 1
            ;;
    esac
    _op_say "PostgreSQL asks for a password over TCP; setting the password of user postgres to 'postgres' (local dev default)"
    _op_as_postgres psql -X -q -p "$port" -c "ALTER USER postgres PASSWORD 'postgres'" >&2 || {
        _op_err "could not set the postgres password through the local socket"
        return 1
    }
    if ! out=$(PGCONNECT_TIMEOUT=5 psql "$url" -XAtqc 'select 1' 2>&1); then
        _op_err "still cannot log in with $DATABASE_URL: $out"
        return 1
    fi
}

# ensure_postgres: PostgreSQL at DATABASE_URL accepts connections (and the
# psql client is installed).
ensure_postgres() {
    local host port
    read -r host port < <(url_host_port "$DATABASE_URL" 5432)
    if ! command -v psql >/dev/null 2>&1; then
        _op_say "psql not found; installing postgresql-client"
        apt_install postgresql-client || _op_say "warning: no psql; scripts that need it will fail"
    fi
    if _op_pg_up "$host" "$port"; then
        _op_pg_login "$port"
        return
    fi
    if [[ -n "$_OP_DB_URL_GIVEN" ]] || ! _op_is_local "$host"; then
        _op_say "waiting for PostgreSQL at $host:$port (from DATABASE_URL; not starting anything)"
        _op_wait "PostgreSQL at $host:$port" "$OFFPEAK_SERVICE_TIMEOUT" _op_pg_up "$host" "$port" || return 1
        _op_pg_login "$port"
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        _op_say "PostgreSQL is not installed"
        apt_install postgresql || return 1
    fi
    # The package may have started it already (under systemd it does).
    if ! _op_pg_up "$host" "$port"; then
        _op_pg_start "$port" || {
            _op_err "could not start PostgreSQL; start it yourself or set DATABASE_URL"
            return 1
        }
    fi
    _op_pg_login "$port" || return 1
    _op_say "PostgreSQL is up at $host:$port"
}

_op_rabbit_log_tail() {
    local f
    for f in /var/log/rabbitmq/rabbit@*.log /var/log/rabbitmq/startup_err; do
        [[ -s "$f" ]] || continue
        _op_say "last lines of $f:"
        tail -n 20 "$f" >&2 || true
    done
}

# ensure_rabbitmq: RabbitMQ at AMQP_URL answers AMQP.
ensure_rabbitmq() {
    local host port default_port=5672 check=_op_amqp_up
    if [[ "$AMQP_URL" == amqps://* ]]; then
        default_port=5671
        check=tcp_open # TLS: we can only see that the port is open
    fi
    read -r host port < <(url_host_port "$AMQP_URL" "$default_port")
    "$check" "$host" "$port" && return 0
    if [[ -n "$_OP_AMQP_URL_GIVEN" ]] || ! _op_is_local "$host"; then
        _op_say "waiting for RabbitMQ at $host:$port (from AMQP_URL; not starting anything)"
        _op_wait "RabbitMQ at $host:$port" "$OFFPEAK_SERVICE_TIMEOUT" "$check" "$host" "$port"
        return
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        _op_say "RabbitMQ is not installed"
        apt_install rabbitmq-server || return 1
    fi
    if ! "$check" "$host" "$port"; then
        _op_say "starting RabbitMQ (this takes a few seconds)"
        if _op_systemd; then
            _op_root service rabbitmq-server start >&2 || true
        elif ! _op_root rabbitmq-server -detached >&2; then
            _op_say "rabbitmq-server -detached failed (it may be starting already); waiting"
        fi
        if ! _op_wait "RabbitMQ on port $port" "$OFFPEAK_SERVICE_TIMEOUT" "$check" "$host" "$port"; then
            _op_rabbit_log_tail
            _op_err "could not start RabbitMQ; start it yourself or set AMQP_URL"
            return 1
        fi
    fi
    _op_say "RabbitMQ is up at $host:$port"
}

# Run as a script rather than sourced.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-all}" in
        all) ensure_postgres && ensure_rabbitmq ;;
        postgres) ensure_postgres ;;
        rabbitmq) ensure_rabbitmq ;;
        env) ;;
        -h | --help)
            echo "usage: $0 [all|postgres|rabbitmq|env]   (prints the variables to export)"
            exit 0
            ;;
        *)
            echo "usage: $0 [all|postgres|rabbitmq|env]" >&2
            exit 2
            ;;
    esac
    printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
    printf 'export AMQP_URL=%q\n' "$AMQP_URL"
fi
