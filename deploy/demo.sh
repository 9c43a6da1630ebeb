#!/usr/bin/env bash
# deploy/demo.sh: the whole offpeak pipeline, end to end, on this machine.
#
# It finds or starts PostgreSQL and RabbitMQ (deploy/local-services.sh),
# builds the release binaries, and runs for real: the provider simulator,
# the scheduler (API + release loop) and two workers. It then submits jobs
# from timezones around the world, the way a backend service would, and
# shows them move: low-priority jobs from places where it is the middle of
# the night (inside the 02:00-06:00 off-peak window) run within seconds, the
# ones from places where it is the afternoon stay `held` until their next
# local 02:00, and a normal-priority job runs at once. It ends with a summary
# and checks that the simulated provider billed exactly one item per
# succeeded job.
#
# Everything it starts is stopped when it exits. Logs: .demo/*.log.
# The database `offpeak_demo` and the queues `offpeak.demo.batches[.dead]`
# are recreated on every run; nothing else is touched.
#
# Settings (environment): DATABASE_URL, AMQP_URL (services of your own; the
# demo uses the database `offpeak_demo` on that server), DEMO_TIMEOUT
# (seconds to wait for the jobs, default 60), DEMO_API_PORT (18080),
# DEMO_SIM_PORT (18090), DEMO_WORKER_PORTS ("19091 19092").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/local-services.sh
source deploy/local-services.sh

DEMO_DIR=$ROOT/.demo
DEMO_TIMEOUT=${DEMO_TIMEOUT:-60}
API_PORT=${DEMO_API_PORT:-18080}
SIM_PORT=${DEMO_SIM_PORT:-18090}
read -r -a WORKER_PORTS <<<"${DEMO_WORKER_PORTS:-19091 19092}"
API=http://127.0.0.1:$API_PORT
SIM=http://127.0.0.1:$SIM_PORT
BIN=$ROOT/target/release
QUEUE=offpeak.demo.batches
JOBS_TSV=$DEMO_DIR/jobs.tsv # id, group, timezone, priority, model, expected (run|held)

heading() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() {
    printf '\ndemo failed: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Background processes, all stopped on exit.

PIDS=()
NAMES=()

# start_bg NAME COMMAND...: runs COMMAND in the background, logging to
# .demo/NAME.log.
start_bg() {
    local name=$1
    shift
    "$@" >"$DEMO_DIR/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
}

log_tails() {
    local name
    for name in "$@"; do
        [[ -s "$DEMO_DIR/$name.log" ]] || continue
        printf '\n--- last lines of .demo/%s.log\n' "$name" >&2
        tail -n 25 "$DEMO_DIR/$name.log" >&2
    done
}

cleanup() {
    local status=$? i pid alive
    trap - EXIT INT TERM
    if [[ ${#PIDS[@]} -gt 0 ]]; then
        printf '\n== stopping the demo processes (SIGTERM)\n' >&2
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        # Workers finish the batches in hand first; give them 30 s.
        for ((i = 0; i < 300; i++)); do
            alive=0
            for pid in "${PIDS[@]}"; do
                kill -0 "$pid" 2>/dev/null && alive=1
            done
            [[ $alive -eq 0 ]] && break
            sleep 0.1
        done
        for i in "${!PIDS[@]}"; do
            if kill -0 "${PIDS[$i]}" 2>/dev/null; then
                printf '   %s did not stop in 30 s; killing it\n' "${NAMES[$i]}" >&2
                kill -KILL "${PIDS[$i]}" 2>/dev/null || true
            fi
        done
        wait 2>/dev/null || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_http NAME URL SECONDS: waits for URL to answer 2xx while process NAME
# (started by start_bg) is alive.
wait_http() {
    local name=$1 url=$2 secs=$3 i j pid=""
    for j in "${!NAMES[@]}"; do
        [[ "${NAMES[$j]}" == "$name" ]] && pid=${PIDS[$j]}
    done
    for ((i = 0; i < secs * 4; i++)); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            log_tails "$name"
            die "$name exited during startup (see above, or .demo/$name.log)"
        fi
        sleep 0.25
    done
    log_tails "$name"
    die "$name did not answer $url within ${secs}s"
}

# ---------------------------------------------------------------------------
# HTTP and JSON helpers (python3 reads the JSON).

# api METHOD PATH [BODY]: calls the API as the demo tenant; sets STATUS and
# leaves the body in $DEMO_DIR/response.json.
api() {
    local method=$1 path=$2 body=${3-}
    local args=(-sS -X "$method" -H "Authorization: Bearer $KEY" -o "$DEMO_DIR/response.json" -w '%{http_code}' --max-time 30)
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    STATUS=$(curl "${args[@]}" "$API$path") || die "curl $method $API$path failed"
}

# json FILE EXPRESSION: prints the Python EXPRESSION evaluated with `d` the
# parsed JSON of FILE (strings raw, other values as JSON).
json() {
    python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v))
PY
}

# want_status CODE WHAT: unless the last `api` call answered CODE, shows
# its answer and stops the demo naming WHAT.
want_status() {
    [[ "$STATUS" == "$1" ]] && return 0
    pretty "$DEMO_DIR/response.json" >&2 || cat "$DEMO_DIR/response.json" >&2
    die "$2 answered $STATUS (expected $1)"
}

pretty() {
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=2))' "$1" | sed 's/^/   /'
}

local_time() { TZ=$1 date +%H:%M; }

# wait_job ID WHAT: polls GET /v1/jobs/ID until the job has ended (30 s at
# most); leaves it in $DEMO_DIR/response.json.
wait_job() {
    local state
    for _ in $(seq 1 150); do
        api GET "/v1/jobs/$1"
        want_status 200 "GET /v1/jobs/$1 ($2)"
        state=$(json "$DEMO_DIR/response.json" 'd["state"]')
        case "$state" in succeeded | failed | dead | cancelled) return 0 ;; esac
        sleep 0.2
    done
    die "$2 ($1) did not end within 30 s (state $state)"
}

# submit_one BODY WHAT: POST /v1/jobs, expects 201; prints the new job's id.
submit_one() {
    api POST /v1/jobs "$1"
    want_status 201 "$2"
    json "$DEMO_DIR/response.json" 'd["id"]'
}

# short_ts 2026-11-25T09:23:47.019001Z -> 2026-11-25T09:23:47Z
short_ts() {
    local t=$1
    [[ "$t" == *.* ]] && t="${t%%.*}Z"
    printf '%s\n' "$t"
}

# ---------------------------------------------------------------------------

printf 'offpeak demo: jobs from around the world, held for their off-peak window\n'
printf '(02:00-06:00 local time), released in batches, run by two workers against\n'
printf 'a simulated AI provider.\n'

heading "1. PostgreSQL, RabbitMQ and tools"
ensure_build_tools
ensure_postgres
ensure_rabbitmq
ensure_commands curl python3
command -v psql >/dev/null 2>&1 || die "psql is needed (apt-get install postgresql-client)"
if [[ ! -e /usr/share/zoneinfo/Asia/Tokyo ]]; then
    apt_install tzdata # `TZ=Area/City date` needs the zone files
fi
note "PostgreSQL: $(url_host_port "$DATABASE_URL" 5432 | tr ' ' ':')   RabbitMQ: $(url_host_port "$AMQP_URL" 5672 | tr ' ' ':')"

heading "2. Building the release binaries (the first build takes a few minutes)"
cargo build --release --workspace --quiet || die "cargo build --release --workspace failed (see above)"
for b in offpeak-scheduler offpeak-worker provider-sim offpeak-webhook-receiver; do
    [[ -x "$BIN/$b" ]] || die "cargo built no $BIN/$b"
done
note "target/release/{offpeak-scheduler,offpeak-worker,provider-sim}"

heading "3. A clean demo database and queue"
for port in "$SIM_PORT" "$API_PORT" "${WORKER_PORTS[@]}"; do
    if tcp_open 127.0.0.1 "$port"; then
        die "port $port is already in use (a demo still running?); free it or choose others with DEMO_API_PORT, DEMO_SIM_PORT, DEMO_WORKER_PORTS"
    fi
done
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/*.log "$JOBS_TSV"
SERVER_URL=$(pg_url_with_db "$DATABASE_URL" postgres)
DEMO_DB_URL=$(pg_url_with_db "$DATABASE_URL" offpeak_demo)
PGOPTIONS='-c client_min_messages=warning' psql "$SERVER_URL" -X -q -v ON_ERROR_STOP=1 \
    -c 'DROP DATABASE IF EXISTS offpeak_demo WITH (FORCE)' >/dev/null ||
    die "could not drop the database offpeak_demo"
read -r amqp_host _ < <(url_host_port "$AMQP_URL" 5672)
if command -v rabbitmqctl >/dev/null 2>&1 && [[ "$amqp_host" =~ ^(127\.|localhost$) ]]; then
    # The vhost is the URL's path, percent-decoded ("%2f" is "/").
    vhost=${AMQP_URL#*://}
    if [[ "$vhost" == */* ]]; then vhost=${vhost#*/}; else vhost=""; fi
    vhost=${vhost%%\?*}
    vhost=${vhost//%2[fF]/\/}
    for q in "$QUEUE" "$QUEUE.dead"; do
        timeout 30 rabbitmqctl -q -p "${vhost:-/}" delete_queue "$q" >/dev/null 2>&1 || true
    done
fi
export DATABASE_URL=$DEMO_DB_URL
export OFFPEAK_QUEUE=$QUEUE
export NO_COLOR=1 # plain logs in .demo/*.log
"$BIN/offpeak-scheduler" migrate >"$DEMO_DIR/migrate.log" 2>&1 || {
    log_tails migrate
    die "offpeak-scheduler migrate failed"
}
note "database offpeak_demo migrated; queue $QUEUE"

heading "4. Starting the provider simulator, the scheduler and two workers"
# The configuration file (docs/configuration.md): the default models on
# the simulator's batch protocol, and one model through each of OpenAI's
# protocols, which the simulator speaks too (section 14).
cat >"$DEMO_DIR/offpeak.toml" <<TOML
[providers.sim]
adapter = "batch"
base_url = "$SIM"
api_key_env = "PROVIDER_API_KEY"

[providers.sim-images]
adapter = "openai-images"
base_url = "$SIM"
api_key_env = "PROVIDER_API_KEY"
requests_per_minute = 600
max_concurrent = 8

[providers.sim-batch-api]
adapter = "openai-batch"
base_url = "$SIM"
api_key_env = "PROVIDER_API_KEY"
price_multiplier = 0.5
poll_interval_secs = 1
poll_interval_max_secs = 2

[models.flux-schnell]
provider = "sim"
price = 1
[models.flux-dev]
provider = "sim"
price = 2
[models.flux-pro]
provider = "sim"
price = 5
[models.minimax-video]
provider = "sim"
price = 15
[models.stable-audio]
provider = "sim"
price = 3
[models.image-now]
provider = "sim-images"
provider_model = "gpt-image-1"
price = 4
[models.image-overnight]
provider = "sim-batch-api"
provider_model = "gpt-image-1"
price = 4

[routes]
thumbnail = "flux-schnell"
preview = "flux-schnell"
product-image = "flux-dev"
marketing = "flux-dev"
hero-image = "flux-pro"
print = "flux-pro"
TOML
export OFFPEAK_CONFIG=$DEMO_DIR/offpeak.toml
start_bg provider-sim "$BIN/provider-sim" --listen "127.0.0.1:$SIM_PORT" --latency-ms 200 --item-error-rate 0.05
wait_http provider-sim "$SIM/healthz" 15
# Low-priority (off-peak) work at half price, to show what it saves.
export OFFPEAK_OFFPEAK_MULTIPLIER=0.5
# The demo's webhook receiver is on this machine (http://127.0.0.1): a
# destination offpeak refuses unless the operator allows private ones.
# The simulator also serves OpenAI's embeddings API, for the semantic cache.
start_bg scheduler env OFFPEAK_LISTEN="127.0.0.1:$API_PORT" OFFPEAK_RELEASE_INTERVAL_MS=200 \
    OFFPEAK_WEBHOOK_ALLOW_PRIVATE=true OFFPEAK_EMBEDDINGS_URL="$SIM" OFFPEAK_EMBEDDINGS_API_KEY=local-dev-key \
    "$BIN/offpeak-scheduler" serve
rm -f "$DEMO_DIR/webhooks.jsonl"
start_bg webhook-receiver "$BIN/offpeak-webhook-receiver" --out "$DEMO_DIR/webhooks.jsonl"
n=0
for port in "${WORKER_PORTS[@]}"; do
    n=$((n + 1))
    start_bg "worker-$n" env PROVIDER_URL="$SIM" OFFPEAK_WORKER_LISTEN="127.0.0.1:$port" OFFPEAK_RETRY_BASE_MS=200 \
        "$BIN/offpeak-worker"
done
wait_http scheduler "$API/readyz" 60
n=0
for port in "${WORKER_PORTS[@]}"; do
    n=$((n + 1))
    wait_http "worker-$n" "http://127.0.0.1:$port/healthz" 30
done
note "provider-sim  $SIM   (200 ms latency, 5% of items rejected)"
note "scheduler     $API   (API and release loop)"
n=0
for port in "${WORKER_PORTS[@]}"; do
    n=$((n + 1))
    note "worker-$n      http://127.0.0.1:$port (metrics)"
done
note "logs in .demo/"

heading "5. A tenant and its API key"
TENANT_NAME="demo-$(date +%Y%m%d-%H%M%S)"
"$BIN/offpeak-scheduler" tenant create --name "$TENANT_NAME" --timezone UTC \
    >"$DEMO_DIR/tenant.out" 2>"$DEMO_DIR/tenant.log" || {
    cat "$DEMO_DIR/tenant.out" >&2
    log_tails tenant
    die "offpeak-scheduler tenant create failed"
}
head -n 1 "$DEMO_DIR/tenant.out" | sed 's/^/   /'
KEY=$(tail -n 1 "$DEMO_DIR/tenant.out")
[[ -n "$KEY" ]] || die "tenant create printed no API key"
note "API key: $KEY"

note "a recurring schedule: thumbnails every night at 02:30 New York time"
api POST /v1/schedules '{"name":"nightly-thumbnails","cron":"30 2 * * *","timezone":"America/New_York","job":{"model":"flux-schnell","input":{"prompt":"catalogue refresh"}}}'
want_status 201 "POST /v1/schedules"
SCHEDULE_ID=$(json "$DEMO_DIR/response.json" 'd["id"]')
api GET "/v1/schedules/$SCHEDULE_ID"
[[ "$STATUS" == 200 ]] || die "GET /v1/schedules/$SCHEDULE_ID answered $STATUS"
note "schedule $SCHEDULE_ID fires next at (UTC): $(json "$DEMO_DIR/response.json" '", ".join(t["utc"] for t in d["next_fire_times"][:3])')"

RECEIVER_URL=""
for _ in $(seq 1 50); do
    RECEIVER_URL=$(head -n 1 "$DEMO_DIR/webhook-receiver.log" 2>/dev/null || true)
    [[ "$RECEIVER_URL" == http* ]] && break
    sleep 0.1
done
[[ "$RECEIVER_URL" == http* ]] || die "the webhook receiver did not start (see .demo/webhook-receiver.log)"
note "a webhook endpoint: every job and group event, signed, to the receiver at $RECEIVER_URL"
api POST /v1/webhooks "{\"url\":\"$RECEIVER_URL\",\"description\":\"offpeak demo receiver\"}"
want_status 201 "POST /v1/webhooks"
WEBHOOK_ID=$(json "$DEMO_DIR/response.json" 'd["id"]')
WEBHOOK_SECRET=$(json "$DEMO_DIR/response.json" 'd["secret"]')
note "endpoint $WEBHOOK_ID, secret ${WEBHOOK_SECRET:0:12}… (shown only in this answer)"

heading "6. Where is it night right now?"
ZONES=(Pacific/Pago_Pago Pacific/Honolulu America/Anchorage America/Los_Angeles America/Denver
    America/Chicago America/New_York America/Halifax America/St_Johns America/Sao_Paulo
    Atlantic/South_Georgia Atlantic/Azores Europe/London Europe/Berlin Europe/Athens
    Europe/Moscow Asia/Tehran Asia/Dubai Asia/Kabul Asia/Karachi Asia/Kolkata Asia/Kathmandu
    Asia/Dhaka Asia/Yangon Asia/Bangkok Asia/Shanghai Australia/Eucla Asia/Tokyo
    Australia/Adelaide Australia/Sydney Australia/Lord_Howe Pacific/Noumea Pacific/Auckland
    Pacific/Chatham Pacific/Tongatapu Pacific/Kiritimati)
IN_WINDOW=()
AFTERNOON=()
for z in "${ZONES[@]}"; do
    hm=$(TZ=$z date +%H%M)
    h=$((10#${hm:0:2}))
    m=$((10#${hm:2:2}))
    # Inside 02:00-06:00, with a few minutes to spare before it closes.
    if ((h >= 2 && h < 5 || (h == 5 && m < 50))); then
        IN_WINDOW+=("$z")
    elif ((h >= 13 && h <= 21)); then
        AFTERNOON+=("$z")
    fi
done
note "UTC now: $(date -u '+%Y-%m-%d %H:%M')"
if [[ ${#IN_WINDOW[@]} -gt 0 ]]; then
    line=""
    for z in "${IN_WINDOW[@]}"; do line+="$z $(local_time "$z"), "; done
    note "inside the 02:00-06:00 window: ${line%, }"
else
    note "no zone of the list is inside its 02:00-06:00 window at this moment;"
    note "all low-priority jobs will be held (the normal-priority one still runs)"
fi
line=""
for z in "${AFTERNOON[@]}"; do line+="$z $(local_time "$z"), "; done
note "afternoon or evening:          ${line%, }"
[[ ${#AFTERNOON[@]} -gt 0 ]] || die "no zone is in its afternoon now (the clock is odd?)"

heading "7. Submitting jobs (POST /v1/jobs, POST /v1/jobs/bulk)"
printf '   %-8s %-14s %-22s %-6s  ->  %-7s %s\n' PRIORITY MODEL TIMEZONE LOCAL STATE RELEASE_AT
: >"$JOBS_TSV"

# submit GROUP EXPECT MODEL PRIORITY TIMEZONE INPUT_JSON [EXTRA_FIELDS_JSON]
submit() {
    local group=$1 expect=$2 model=$3 priority=$4 tz=$5 input=$6 extra=${7:+,$7} id state release_at
    api POST /v1/jobs "{\"model\":\"$model\",\"input\":$input,\"priority\":\"$priority\",\"timezone\":\"$tz\"$extra}"
    want_status 201 "POST /v1/jobs"
    id=$(json "$DEMO_DIR/response.json" 'd["id"]')
    model=$(json "$DEMO_DIR/response.json" 'd["model"]') # "auto" becomes the routed model
    state=$(json "$DEMO_DIR/response.json" 'd["state"]')
    release_at=$(json "$DEMO_DIR/response.json" 'd["release_at"]')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$group" "$tz" "$priority" "$model" "$expect" >>"$JOBS_TSV"
    printf '   %-8s %-14s %-22s %-6s  ->  %-7s %s\n' "$priority" "$model" "$tz" "$(local_time "$tz")" "$state" "$(short_ts "$release_at")"
}

if [[ ${#IN_WINDOW[@]} -gt 0 ]]; then
    IN1=${IN_WINDOW[0]}
    IN2=${IN_WINDOW[${#IN_WINDOW[@]} - 1]} # the other end of the night, if there are two
    submit single run flux-schnell low "$IN1" '{"prompt":"a lighthouse at dawn","width":512,"height":512}' \
        '"user_id":"user-42","metadata":{"source":"offpeak-demo"}'
    submit single run flux-dev low "$IN2" '{"prompt":"a fox asleep in the snow","width":768,"height":512}'
    submit single run stable-audio low "$IN1" '{"prompt":"rain on a tin roof","seconds":10}'
    BULK_TZ=$IN1
    BULK_EXPECT=run
else
    BULK_TZ=${AFTERNOON[0]}
    BULK_EXPECT=held
fi
A1=${AFTERNOON[0]}
A2=${AFTERNOON[$((1 % ${#AFTERNOON[@]}))]}
A3=${AFTERNOON[$((2 % ${#AFTERNOON[@]}))]}
submit single held flux-pro low "$A1" '{"prompt":"a cathedral made of glass","width":1024,"height":1024}'
submit single held minimax-video low "$A2" '{"prompt":"waves breaking at sunset","seconds":5}'
submit single held flux-dev low "$A3" '{"prompt":"a map of an invented city","width":1024,"height":768}'
submit single run flux-pro normal "$A1" '{"prompt":"a product shot of a red teapot","width":1024,"height":1024}'
# The same request five times (model routing picks flux-dev for product
# images): the provider is called once, the others wait for its result.
for _ in 1 2 3 4 5; do
    submit same run auto normal "$A1" '{"prompt":"a product shot of a blue teapot","width":1024,"height":1024}' \
        '"use_case":"product-image"'
done

inputs=""
for i in $(seq 1 20); do
    inputs+="{\"prompt\":\"catalogue thumbnail of item $i\",\"width\":256,\"height\":256,\"sku\":\"SKU-$((1000 + i))\"},"
done
api POST /v1/jobs/bulk "{\"model\":\"flux-schnell\",\"inputs\":[${inputs%,}],\"timezone\":\"$BULK_TZ\"}"
want_status 201 "POST /v1/jobs/bulk"
python3 - "$DEMO_DIR/response.json" "$BULK_TZ" "$BULK_EXPECT" >>"$JOBS_TSV" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for i in d["ids"]:
    print(f"{i}\tbulk\t{sys.argv[2]}\tlow\tflux-schnell\t{sys.argv[3]}")
PY
printf '   %-8s %-14s %-22s %-6s  ->  %-7s %s\n' "low x$(json "$DEMO_DIR/response.json" 'd["count"]')" flux-schnell "$BULK_TZ" \
    "$(local_time "$BULK_TZ")" "$(json "$DEMO_DIR/response.json" 'd["state"]')" "$(short_ts "$(json "$DEMO_DIR/response.json" 'd["release_at"]')")"
note "(a low-priority job is due at once inside its window: a bulk submission then queues its jobs itself"
note " when nothing else waits for the queue, else the release loop does)"

heading "8. Watching the jobs (GET /v1/jobs every second, up to ${DEMO_TIMEOUT}s)"
note "(a line when the counts change, and every 10 s)"
printf '   %4s %6s %7s %8s %10s %7s %5s\n' t held queued running succeeded failed dead
usecs() { local t=${EPOCHREALTIME//[.,]/}; printf '%s\n' "$((10#$t))"; }
start=$(usecs)
done_ok=0
last_counts=""
last_shown=-100
while :; do
    elapsed=$(($(usecs) - start))
    secs=$((elapsed / 1000000))
    api GET "/v1/jobs?limit=1000"
    [[ "$STATUS" == 200 ]] || die "GET /v1/jobs answered $STATUS"
    rc=0
    row=$(
        python3 - "$DEMO_DIR/response.json" "$JOBS_TSV" "$secs" <<'PY'
import json, sys
jobs = {j["id"]: j for j in json.load(open(sys.argv[1]))["jobs"]}
expect = dict((l.split("\t")[0], l.split("\t")[5].strip()) for l in open(sys.argv[2]) if l.strip())
count = {}
for j in jobs.values():
    count[j["state"]] = count.get(j["state"], 0) + 1
print("   %3ss %6d %7d %8d %10d %7d %5d" % (sys.argv[3], *(count.get(s, 0) for s in
      ("held", "queued", "running", "succeeded", "failed", "dead"))))
terminal = {"succeeded", "failed", "dead", "cancelled"}
pending = [i for i, e in expect.items() if e == "run" and jobs.get(i, {}).get("state") not in terminal]
sys.exit(0 if not pending else 10)
PY
    ) || rc=$?
    [[ $rc -eq 0 || $rc -eq 10 ]] || die "could not read the job list"
    counts=${row#*s }
    if [[ "$counts" != "$last_counts" || $rc -eq 0 || $((secs - last_shown)) -ge 10 ]]; then
        printf '%s\n' "$row"
        last_counts=$counts
        last_shown=$secs
    fi
    if [[ $rc -eq 0 ]]; then
        done_ok=1
        break
    fi
    elapsed=$(($(usecs) - start))
    ((elapsed < DEMO_TIMEOUT * 1000000)) || break
    # Poll on whole seconds since the start.
    sleep "$(printf '%d.%06d' $(((1000000 - elapsed % 1000000) / 1000000)) $(((1000000 - elapsed % 1000000) % 1000000)))"
done
if [[ $done_ok -eq 0 ]]; then
    log_tails scheduler worker-1 worker-2 provider-sim
    printf '\n   jobs that should have run are still not finished after %ss (logs above)\n' "$DEMO_TIMEOUT"
fi

webhook_failed=0
heading "9. Webhooks: what the receiver got (verified here as a submitter would)"
# Deliveries follow the jobs' terminal writes within a second or two.
sleep 3
api GET "/v1/jobs?limit=1000"
python3 - "$DEMO_DIR/webhooks.jsonl" "$WEBHOOK_SECRET" "$DEMO_DIR/response.json" <<'PY' | sed 's/^/   /' || webhook_failed=1
import base64, hashlib, hmac, json, sys

def verify(secret, msg_id, timestamp, body, header):
    """Standard Webhooks: HMAC-SHA256 of "{id}.{timestamp}.{body}" under the secret's bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig.removeprefix("v1,"), expected) for sig in header.split(" "))

lines = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
ok = sum(verify(sys.argv[2], l["webhook_id"], l["webhook_timestamp"], l["body"], l["webhook_signature"]) for l in lines)
events = [json.loads(l["body"]) for l in lines]
by_type = {}
for e in events:
    by_type[e["type"]] = by_type.get(e["type"], 0) + 1
print("%d deliveries, %d with a valid signature: %s" % (len(lines), ok, ", ".join("%s %d" % kv for kv in sorted(by_type.items()))))
jobs = json.load(open(sys.argv[3]))["jobs"]
ended = {j["id"] for j in jobs if j["state"] in ("succeeded", "failed", "dead", "cancelled")}
told = {e["data"]["id"] for e in events if e["type"].startswith("job.")}
print("jobs ended: %d, of which the receiver was told: %d" % (len(ended), len(ended & told)))
sample = next((e for e in events if e["type"] == "job.succeeded"), None)
if sample:
    d = sample["data"]
    print("e.g. %s at %s: job %s, %s, %s credits, result %s" % (sample["type"], sample["timestamp"], d["id"], d["model"], d["credits"], json.dumps(d["result"])[:60]))
for e in events:
    if e["type"] == "group.completed":
        print("group.completed %s: %s" % (e["data"]["id"], json.dumps(e["data"]["counts"])))
if ok != len(lines) or not ended <= told:
    sys.exit("a delivery did not verify, or an ended job has no event yet")
PY

heading "10. Summary"
curl -fsS --max-time 10 "$SIM/v1/stats" -o "$DEMO_DIR/sim-stats.json" || die "GET $SIM/v1/stats failed"
checks=0
python3 - "$DEMO_DIR/response.json" "$JOBS_TSV" "$DEMO_DIR/sim-stats.json" <<'PY' || checks=$?
import json, re, sys
from datetime import datetime, timezone
try:
    from zoneinfo import ZoneInfo
except ImportError:  # Python < 3.9
    ZoneInfo = None

def ts(s):
    """RFC 3339 from the API (Z, up to nanoseconds) -> aware datetime."""
    if not s:
        return None
    s = re.sub(r"(\.\d{6})\d+", r"\1", s.replace("Z", "+00:00"))
    return datetime.fromisoformat(s)

def local(dt, tz, fmt):
    if dt is None or ZoneInfo is None:
        return "-"
    return dt.astimezone(ZoneInfo(tz)).strftime(fmt)

jobs = {j["id"]: j for j in json.load(open(sys.argv[1]))["jobs"]}
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
sim = json.load(open(sys.argv[3]))
now = datetime.now(timezone.utc)

# One line per job; the bulk submission's jobs grouped by state.
lines, bulk = [], {}
for n, (jid, group, tz, prio, model, expect) in enumerate(rows, 1):
    j = jobs.get(jid, {})
    state = j.get("state", "missing")
    if group == "bulk":
        b = bulk.setdefault(state, {"n": 0, "credits": 0, "row": (tz, prio, model, j)})
        b["n"] += 1
        b["credits"] += j.get("credits") or 0
        continue
    lines.append((str(n), tz, prio, model, state, j, j.get("credits")))
for state, b in sorted(bulk.items()):
    tz, prio, model, j = b["row"]
    lines.append(("%dx" % b["n"], tz, prio, model, state, j, b["credits"] if state in ("succeeded", "failed", "dead") else None))

fmt = "   %-4s %-20s %-5s %-6s %-13s %-9s %-17s %-9s %s"
print(fmt % ("", "TIMEZONE", "NOW", "PRIO", "MODEL", "STATE", "RELEASE_AT (UTC)", "(LOCAL)", "CREDITS"))
for label, tz, prio, model, state, j, credits in lines:
    rel = ts(j.get("release_at"))
    print(fmt % (label, tz, local(now, tz, "%H:%M"), prio, model, state,
                 rel.strftime("%Y-%m-%d %H:%M") if rel else "-", local(rel, tz, "%a %H:%M"),
                 "-" if credits is None else credits))

totals, credits, succeeded, cache_hits = {}, 0, 0, 0
held_ok = held_total = 0
for jid, group, tz, prio, model, expect in rows:
    j = jobs.get(jid, {})
    state = j.get("state", "missing")
    totals[state] = totals.get(state, 0) + 1
    credits += j.get("credits") or 0
    if state == "succeeded":
        succeeded += 1
        cache_hits += bool(j.get("cache_hit"))
    if expect == "held":
        held_total += 1
        held_ok += state == "held"

print()
print("   jobs: %d submitted; %s" % (len(rows), ", ".join("%s %d" % kv for kv in sorted(totals.items()))))
print("   credits spent: %d" % credits)
print("   provider simulator (GET /v1/stats): batch calls %d, items billed %d, items rejected %d,"
      % (sim.get("batches", 0), sim.get("items", 0), sim.get("item_errors", 0)))
print("      idempotent replays %d, 503s %d, 429s %d, garbled responses %d"
      % (sim.get("replays", 0), sim.get("errors", 0), sim.get("rate_limited", 0), sim.get("garbage", 0)))
print("      billed per model: %s" % (", ".join("%s %d" % kv for kv in sorted(sim.get("by_model", {}).items())) or "none"))
one = next((jobs[r[0]] for r in rows if jobs.get(r[0], {}).get("state") in ("failed", "dead")), None)
if one:
    print("   why a job %s: %s" % (one["state"], json.dumps(one.get("error"))))

print()
billed = sim.get("items", 0)
paid = succeeded - cache_hits
ok = True
def check(good, text):
    global ok
    ok = ok and good
    print("   [%s] %s" % ("ok" if good else "FAIL", text))
check(billed == paid, "simulator billed items = %d, succeeded jobs = %d%s" % (
    billed, paid, " (+%d cache hits, not billed)" % cache_hits if cache_hits else ""))
check(sim.get("max_billed_per_input", 0) <= 1, "no input billed twice (most bills for one input: %d)" % sim.get("max_billed_per_input", 0))
check(held_ok == held_total, "low-priority jobs outside their window still held: %d of %d" % (held_ok, held_total))
terminal = {"succeeded", "failed", "dead", "cancelled"}
ran = [r for r in rows if r[5] == "run"]
fin = sum(jobs.get(r[0], {}).get("state") in terminal for r in ran)
check(fin == len(ran), "jobs due now that reached a final state: %d of %d" % (fin, len(ran)))
sys.exit(0 if ok else 1)
PY

# One finished job in full, as a client reads it back.
shown=$(python3 - "$DEMO_DIR/response.json" "$JOBS_TSV" <<'PY'
import json, sys
jobs = {j["id"]: j for j in json.load(open(sys.argv[1]))["jobs"]}
ids = [l.split("\t")[0] for l in open(sys.argv[2]) if l.strip()]
for want in ("succeeded", "failed", "dead"):
    for i in ids:
        if jobs.get(i, {}).get("state") == want:
            print(i)
            sys.exit(0)
PY
)
if [[ -n "$shown" ]]; then
    heading "One finished job, read back (GET /v1/jobs/$shown)"
    api GET "/v1/jobs/$shown"
    python3 - "$DEMO_DIR/response.json" <<'PY' | sed 's/^/   /'
import json, sys
d = json.load(open(sys.argv[1]))
keep = ("id", "state", "model", "input", "priority", "timezone", "user_id", "metadata", "release_at",
        "attempts", "result", "error", "credits", "cache_hit", "created_at", "finished_at")
print(json.dumps({k: d[k] for k in keep if k in d}, indent=2))
PY
fi

held_tz=$(awk -F'\t' '$6 == "held" { print $3; exit }' "$JOBS_TSV")
if [[ -n "$held_tz" ]]; then
    heading "When will the $held_tz jobs run? (GET /v1/windows/next?timezone=$held_tz)"
    api GET "/v1/windows/next?timezone=$held_tz"
    pretty "$DEMO_DIR/response.json"
fi

heading "11. Saving credits: the cache, the off-peak price and a daily limit"
note "the blue teapot once more: answered from the cache at once, 0 credits, no provider call"
api POST /v1/jobs '{"model":"auto","use_case":"product-image","priority":"normal","input":{"prompt":"a product shot of a blue teapot","width":1024,"height":1024}}'
[[ "$STATUS" == 201 ]] || die "POST /v1/jobs answered $STATUS (expected 201)"
python3 - "$DEMO_DIR/response.json" <<'PY' | sed 's/^/   /'
import json, sys
j = json.load(open(sys.argv[1]))
print("state %s, cache_hit %s, credits %s, cache_source %s" % (j["state"], j["cache_hit"], j["credits"], j["cache_source"]))
PY
api GET /v1/tenant
used=$(json "$DEMO_DIR/response.json" 'd["quota"]["used"]')
limit=$((used + 5))
note "a daily limit of $limit credits (tenant update $TENANT_NAME --daily-credits $limit); today counts $used so far"
"$BIN/offpeak-scheduler" tenant update "$TENANT_NAME" --daily-credits "$limit" | sed 's/^/   /'
inputs=""
for i in $(seq 1 10); do inputs+="{\"prompt\":\"poster $i\"},"; done
api POST /v1/jobs/bulk "{\"model\":\"flux-schnell\",\"priority\":\"normal\",\"inputs\":[${inputs%,}]}"
note "10 more flux-schnell jobs (10 credits) at once: HTTP $STATUS, nothing stored"
[[ "$STATUS" == 429 ]] || die "a bulk submission over the daily limit answered $STATUS (expected 429)"
python3 - "$DEMO_DIR/response.json" <<'PY' | fold -s -w 100 | sed 's/^/   /'
import json, sys
print(json.load(open(sys.argv[1]))["error"]["message"])
PY
"$BIN/offpeak-scheduler" tenant update "$TENANT_NAME" --daily-credits none >/dev/null
api GET "/v1/usage?group_by=model"
note "what this run cost and saved (GET /v1/usage?group_by=model):"
python3 - "$DEMO_DIR/response.json" <<'PY' | sed 's/^/   /'
import json, sys
u = json.load(open(sys.argv[1]))
fmt = "%-14s %8s %8s %12s %14s %12s"
print(fmt % ("MODEL", "REQUESTS", "CREDITS", "LIST PRICE", "SAVED OFFPEAK", "SAVED CACHE"))
for m, g in sorted(u["groups"].items()):
    print(fmt % (m, g["requests"], g["credits"], g["list_credits"], g["saved_offpeak"], g["saved_cache"]))
t = u["totals"]
print(fmt % ("total", t["requests"], t["credits"], t["list_credits"], t["saved_offpeak"], t["saved_cache"]))
if t["list_credits"]:
    print("paid %d of %d list-price credits: %.0f%% saved" % (t["credits"], t["list_credits"], 100.0 * (t["list_credits"] - t["credits"]) / t["list_credits"]))
PY

heading "12. The semantic cache: a rewording answered, near misses sent to the provider"
note "a flux-dev job with \"cache\": \"semantic\": \"a photo of a lighthouse at dawn\", 512 wide"
# The simulator rejects 5% of items: a rejected source is submitted again.
for _ in 1 2 3; do
    first=$(submit_one '{"model":"flux-dev","priority":"normal","cache":"semantic","input":{"prompt":"a photo of a lighthouse at dawn","width":512}}' "the first lighthouse")
    wait_job "$first" "the first lighthouse"
    [[ $(json "$DEMO_DIR/response.json" 'd["state"]') == succeeded ]] && break
done
[[ $(json "$DEMO_DIR/response.json" 'd["state"]') == succeeded ]] || die "the first lighthouse did not succeed in 3 tries"
semantic_case() { # WHAT PROMPT WIDTH hit|miss
    local id
    id=$(submit_one "{\"model\":\"flux-dev\",\"priority\":\"normal\",\"cache\":\"semantic\",\"input\":{\"prompt\":\"$2\",\"width\":$3}}" "$1")
    wait_job "$id" "$1"
    python3 - "$DEMO_DIR/response.json" "$1" "$first" "$4" <<'PY' | sed 's/^/   /'
import json, sys
j, what, first, want = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
if j["cache_kind"] == "semantic":
    print("%-34s semantic hit, similarity %.3f, source %s, %s credits" % (what, j["cache_similarity"], j["cache_source"], j["credits"]))
    ok = want == "hit" and j["cache_source"] == first and j["credits"] == 0
else:
    print("%-34s not a hit: sent to the provider (%s, %s credits)" % (what, j["state"], j["credits"]))
    ok = want == "miss" and not j["cache_hit"]
sys.exit(0 if ok else 1)
PY
}
semantic_case "\"Lighthouse at sunrise, photograph\"" "Lighthouse at sunrise, photograph" 512 hit || die "the rewording was not answered by the first lighthouse"
semantic_case "the same prompt, 1024 wide" "a photo of a lighthouse at dawn" 1024 miss || die "a near miss (another width) was answered"
semantic_case "\"...a lighthouse, not at dawn\"" "a photo of a lighthouse, not at dawn" 512 miss || die "a near miss (a negation) was answered"
semantic_case "\"a photo of a windmill at dawn\"" "a photo of a windmill at dawn" 512 miss || die "a near miss (another subject) was answered"
api GET "/v1/usage"
note "saved by the semantic cache today: $(json "$DEMO_DIR/response.json" 'd["totals"]["saved_semantic"]') credits (GET /v1/usage, saved_semantic)"

heading "13. Preview first, full quality overnight"
note "a hero image asked for as a preview: {\"model\":\"auto\",\"use_case\":\"hero-image\",\"preview\":{\"use_case\":\"thumbnail\"}}"
for _ in 1 2 3; do # the simulator rejects 5% of items: a rejected preview is asked for again
    preview=$(submit_one '{"model":"auto","use_case":"hero-image","preview":{"use_case":"thumbnail"},"input":{"prompt":"a hero image of a red bicycle against a white wall","width":512}}' "the preview")
    wait_job "$preview" "the preview"
    [[ $(json "$DEMO_DIR/response.json" 'd["state"]') == succeeded ]] && break
done
python3 - "$DEMO_DIR/response.json" <<'PY' | sed 's/^/   /'
import json, sys
j = json.load(open(sys.argv[1]))
print("preview %s: %s on %s now (%s priority), %s credits; upgrade target %s" % (
    j["id"], j["state"], j["model"], j["priority"], j["credits"], json.dumps(j["upgrade"])))
PY
[[ $(json "$DEMO_DIR/response.json" 'd["state"]') == succeeded ]] || die "the preview did not succeed"
note "the user clicked it: POST /v1/jobs/$preview/upgrade {\"input\":{\"width\":2048}}"
api POST "/v1/jobs/$preview/upgrade" '{"input":{"width":2048}}'
want_status 201 "the upgrade"
child=$(json "$DEMO_DIR/response.json" 'd["id"]')
python3 - "$DEMO_DIR/response.json" <<'PY' | sed 's/^/   /'
import json, sys
j = json.load(open(sys.argv[1]))
print("full-quality job %s: %s on %s, %s priority, input %s, parent_id %s, release_at %s" % (
    j["id"], j["state"], j["model"], j["priority"], json.dumps(j["input"]), j["parent_id"], j["release_at"]))
PY
api POST "/v1/jobs/$preview/upgrade" '{"input":{"width":2048}}'
want_status 200 "the same upgrade again (a double click)"
[[ $(json "$DEMO_DIR/response.json" 'd["id"]') == "$child" ]] || die "a double click made a second full-quality job"
note "a double click: HTTP 200, the same job $child (costs once)"
api GET "/v1/jobs/$preview"
note "the preview lists its children: $(json "$DEMO_DIR/response.json" 'd["children"]')"
api GET "/v1/usage"
note "usage: $(json "$DEMO_DIR/response.json" '"previews %d, upgrades %d, saved_preview %d credits (the upgrade is counted once it has run)" % (d["totals"]["previews"], d["totals"]["upgrades"], d["totals"]["saved_preview"])')"

heading "14. One model through each provider protocol (.demo/offpeak.toml)"
note "flux-dev        -> sim            (batch: POST /v1/batch, one call per batch)"
note "image-now       -> sim-images     (openai-images: POST /v1/images/generations, one call per job, 600/min shared)"
note "image-overnight -> sim-batch-api  (openai-batch: a JSONL file, POST /v1/batches, polled; half price)"
for model in flux-dev image-now image-overnight; do
    for attempt in 1 2 3; do # the simulator rejects 5% of items
        id=$(submit_one "{\"model\":\"$model\",\"priority\":\"normal\",\"input\":{\"prompt\":\"a paper boat on a pond, try $attempt\"}}" "a $model job")
        wait_job "$id" "the $model job"
        [[ $(json "$DEMO_DIR/response.json" 'd["state"]') == succeeded ]] && break
    done
    [[ $(json "$DEMO_DIR/response.json" 'd["state"]') == succeeded ]] || die "the $model job did not succeed"
    note "$(json "$DEMO_DIR/response.json" '"%-16s %s, %s credits, result %s" % (d["model"], d["state"], d["credits"], json.dumps(d["result"])[:70] + "...")')"
done
api GET "/v1/usage?group_by=provider"
want_status 200 "GET /v1/usage?group_by=provider"
note "usage by provider: $(json "$DEMO_DIR/response.json" '", ".join("%s %d requests %d credits" % (k, v["requests"], v["credits"]) for k, v in sorted(d["groups"].items()))')"

heading "A mistake, for comparison (\"timezone\": \"Mars/Olympus\")"
api POST /v1/jobs '{"model":"flux-schnell","input":{"prompt":"red dust"},"timezone":"Mars/Olympus"}'
note "HTTP $STATUS"
pretty "$DEMO_DIR/response.json"

echo
if [[ $checks -ne 0 || $done_ok -ne 1 || $webhook_failed -ne 0 ]]; then
    echo "demo FAILED: a check above did not hold (logs in .demo/)" >&2
    exit 1
fi
echo "demo done: every job due now ran exactly once; the held ones wait for their night."
