#!/usr/bin/env bash
# deploy/validate.sh: validates everything under deploy/ offline, without a
# cluster or a Docker engine (see deploy/validate.py for the full list):
#   - the Dockerfile and .dockerignore against the workspace (paths, binaries);
#   - deploy/compose.yaml against the compose-spec JSON schema, plus structure
#     (depends_on targets, health checks, commands, environment variables);
#   - every kustomization under deploy/k8s rendered, each object against the
#     Kubernetes JSON schemas (kubernetes-validate, strict), KEDA objects
#     against deploy/schemas/, and the references between them;
#   - the Grafana dashboard and the Prometheus alert rules: they parse and use
#     only metric and label names the Rust sources export.
#
# Needs python3 (and, once, PyPI): the packages go into target/validate-venv,
# created on the first run and reused after (rerun with VALIDATE_REINSTALL=1
# to rebuild it). Installs python3-venv with apt-get if it is missing (root).
# Exits non-zero, naming each problem, when anything is invalid.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=target/validate-venv
req=deploy/validate-requirements.txt
# The compose-spec JSON schema as shipped inside the last Python release of
# docker-compose (only that file is used; the package is not installed).
compose_pkg=docker-compose==1.29.2
compose_schema=$venv/compose-spec.json

say() { echo "== deploy/validate.sh: $*" >&2; }

if ! command -v python3 >/dev/null || ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "python3 (3.11 or newer) is required"; exit 2
fi

stamp=$venv/.requirements
if [[ "${VALIDATE_REINSTALL:-}" == 1 ]] || ! cmp -s "$req" "$stamp" 2>/dev/null || [[ ! -x $venv/bin/python ]]; then
    say "setting up $venv (once)"
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            say "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
                || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
        else
            say "python3's venv module is missing: install python3-venv"; exit 2
        fi
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps "$compose_pkg" -d "$tmp"
    "$venv/bin/python" - "$tmp" "$compose_schema" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("compose/config/compose_spec.json"))
PY
    cp "$req" "$stamp"
fi

say "validating Dockerfile, compose, Kubernetes manifests, dashboard and alerts"
if "$venv/bin/python" -u deploy/validate.py --compose-schema "$compose_schema" "$@"; then
    say "all valid"
else
    say "INVALID deploy files (see FAIL lines above)"
    exit 1
fi
