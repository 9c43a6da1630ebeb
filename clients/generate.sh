#!/usr/bin/env bash
# clients/generate.sh: regenerate every client from the API's OpenAPI document.
#
#     clients/generate.sh
#
# Builds the workspace's binaries, starts a throwaway offpeak
# (offpeak-client-stack, on its own database; PostgreSQL and RabbitMQ as
# tests/run.sh finds or starts them), writes its /openapi.json in portable
# form to clients/openapi.json, and regenerates from it:
#   - clients/rust/src/types.rs          (offpeak-client-codegen, typify)
#   - clients/typescript/src/generated/  (openapi-typescript)
#   - clients/python/offpeak_client/_generated/  (openapi-python-client)
# Run it after changing the API; tests/run.sh fails while any of them is stale.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/local-services.sh
source deploy/local-services.sh
ensure_build_tools
ensure_postgres
ensure_rabbitmq
cargo build --workspace --bins
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/debug/offpeak-client-stack" --openapi clients/openapi.json
"$target_dir/debug/offpeak-client-codegen" clients/openapi.json clients/rust/src/types.rs
clients/typescript/generate.sh
clients/python/generate.sh
echo "clients regenerated from clients/openapi.json" >&2
