#!/usr/bin/env bash
# Load benchmark: the bare Django view, the GraphQL `me` query, the `wechatLogin` mutation, WeChat Pay
# v2 and v3 pay notifies, Alipay pay notifies, the `orders` page and a follower's safe-mode text message
# to the official account's server URL, side by side in one run, against gunicorn (production's
# config/gunicorn.conf.py: gthread; 2 workers) on PostgreSQL + Redis.
#
#   bash bench/run.sh            (from the repository root; see bench/README.md)
#
# Knobs (environment, defaults in brackets):
#   BENCH_THREADS [1]  BENCH_CONNECTIONS [8]  BENCH_DURATION [10s]  wrk's -t -c -d, the same for every scenario
#   BENCH_ROUNDS [3]        rounds of the scenarios back to back; the report gives the medians
#   BENCH_WARMUP [5s]       warm-up per scenario, not measured
#   BENCH_SCENARIOS ["bare floor me login notify_v2 notify_v3 notify_alipay orders oa_text"]: floor
#                           is `{ __typename }`, for information (no target)
#   BENCH_LOGIN_USERS [0]   0: each login is a new user; N: logins of N returning users
#   BENCH_NOTIFY_RATE_V2 [2400]  BENCH_NOTIFY_RATE_V3 [2000]  BENCH_NOTIFY_RATE_ALIPAY [1500]: fresh
#                           pending orders (and notifies) prepared per second of each phase; a phase
#                           that runs out fails the run
#   BENCH_OA_RATE [4000]    oa_text: safe-mode text messages (each a fresh MsgId) prepared per second of
#                           each phase; a phase that runs out fails the run
#   BENCH_PORT [a free one]   BENCH_DB [wxbackend_bench]
#   BENCH_QUIET_WAIT [60]   before each round, wait up to this many seconds while other programs
#                           keep the machine over 15% busy (0: never wait)
#   BENCH_PROFILE=1         py-spy samples the workers in each measured scenario (needs py-spy)
#   BENCH_KEEP_LOGS=1       keeps wrk's, gunicorn's and py-spy's output (the path is printed)
#   BENCH_THREADS_PER_WORKER [4]  gunicorn threads per worker (gthread, as in production)
# Exit status: 0 when every answer was right (HTTP 200 / 204, the expected data, no GraphQL errors, no
# socket errors, enough notifies and messages), the database agrees with the notify answers (PAID
# orders) and the shared cache with the text messages' (a reply kept for each), 1 otherwise or when
# setup failed. Whether the targets are met is printed only.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"
GUNICORN="$ROOT/.venv/bin/gunicorn"
THREADS="${BENCH_THREADS:-1}"
CONNECTIONS="${BENCH_CONNECTIONS:-8}"
DURATION="${BENCH_DURATION:-10s}"
ROUNDS="${BENCH_ROUNDS:-3}"
WARMUP="${BENCH_WARMUP:-5s}"
DB_NAME="${BENCH_DB:-wxbackend_bench}"
SCENARIOS="${BENCH_SCENARIOS:-bare floor me login notify_v2 notify_v3 notify_alipay orders oa_text}"
NOTIFY_RATE_V2="${BENCH_NOTIFY_RATE_V2:-2400}"
NOTIFY_RATE_V3="${BENCH_NOTIFY_RATE_V3:-2000}"
NOTIFY_RATE_ALIPAY="${BENCH_NOTIFY_RATE_ALIPAY:-1500}"
OA_RATE="${BENCH_OA_RATE:-4000}"
LOGIN_USERS="${BENCH_LOGIN_USERS:-0}"
KEEP_LOGS="${BENCH_KEEP_LOGS:-0}"
GUNICORN_THREADS="${BENCH_THREADS_PER_WORKER:-4}"
QUIET_WAIT="${BENCH_QUIET_WAIT:-60}"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
REDIS_URL_BENCH="redis://127.0.0.1:6379/2"
CACHE_PREFIX=bench

# Progress goes to fd 3, the script's stderr, so it still shows when a trap fires inside a
# command whose stderr is redirected.
exec 3>&2
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }
die() { log "ERROR: $*"; exit 1; }

case "$ROUNDS" in ''|*[!0-9]*) die "BENCH_ROUNDS must be a number" ;; esac
case "$LOGIN_USERS" in ''|*[!0-9]*) die "BENCH_LOGIN_USERS must be a number" ;; esac
case "$QUIET_WAIT" in ''|*[!0-9]*) die "BENCH_QUIET_WAIT must be a number of seconds" ;; esac
case "$NOTIFY_RATE_V2$NOTIFY_RATE_V3$NOTIFY_RATE_ALIPAY$OA_RATE" in
    ''|*[!0-9]*) die "BENCH_NOTIFY_RATE_V2/V3/ALIPAY and BENCH_OA_RATE must be numbers" ;;
esac
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || die "BENCH_ROUNDS must be 1 to 20"
for mode in $SCENARIOS; do
    case "$mode" in
        bare|floor|me|login|notify_v2|notify_v3|notify_alipay|orders|oa_text) ;;
        *) die "unknown scenario $mode (bare, floor, me, login, notify_v2, notify_v3, notify_alipay, orders, oa_text)" ;;
    esac
done
has() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }
seconds() { # seconds 10s|2m|5 -> whole seconds, as wrk reads -d
    awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; if (d ~ /h$/) n *= 3600; printf "%d", n }'
}

# --- prerequisites ------------------------------------------------------------------
[ -x "$PY" ] || die "no $PY: create the venv first (make install)"
[ -x "$GUNICORN" ] || die "no $GUNICORN: .venv/bin/pip install gunicorn"
command -v psql >/dev/null || die "psql not found (apt-get install -y postgresql-client)"
command -v curl >/dev/null || die "curl not found (apt-get install -y curl)"
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "wrk not found: installing it (apt-get install -y wrk)"
        { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq wrk; } >/dev/null 2>&1 \
            || die "could not install wrk"
    else
        die "wrk not found: sudo apt-get install -y wrk"
    fi
fi
PYSPY=""
if [ "${BENCH_PROFILE:-0}" = 1 ]; then
    if [ -x "$ROOT/.venv/bin/py-spy" ]; then PYSPY="$ROOT/.venv/bin/py-spy"; else PYSPY="$(command -v py-spy || true)"; fi
    [ -n "$PYSPY" ] || die "BENCH_PROFILE=1 needs py-spy: .venv/bin/pip install py-spy"
    KEEP_LOGS=1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/wxbench.XXXXXX")"
GUNICORN_PID=""

redis_clean() {
    # Removes this benchmark's keys only (prefix "bench:" in Redis db 2).
    timeout 60 env -i PATH="$PATH" "$PY" - "$REDIS_URL_BENCH" "$CACHE_PREFIX" <<'EOF' 2>&3 || log "warning: redis cleanup failed"
import sys

import redis

r = redis.Redis.from_url(sys.argv[1], socket_timeout=5)
batch, removed = [], 0
for key in r.scan_iter(match=sys.argv[2] + ":*", count=1000):
    batch.append(key)
    if len(batch) >= 1000:
        removed += r.unlink(*batch)
        batch = []
if batch:
    removed += r.unlink(*batch)
print(f"[bench] redis: removed {removed} keys of the benchmark", file=sys.stderr)
EOF
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        log "stopping gunicorn (pid $GUNICORN_PID)"
        kill -TERM "$GUNICORN_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$GUNICORN_PID" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$GUNICORN_PID" 2>/dev/null; then
            log "gunicorn did not stop in 10 s: killing it"
            kill -KILL "$GUNICORN_PID" 2>/dev/null || true
        fi
        wait "$GUNICORN_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ -s "$WORK/gunicorn.log" ]; then
        log "last lines of the gunicorn log:"
        tail -n 30 "$WORK/gunicorn.log" >&3 || true
    fi
    redis_clean
    if [ "$KEEP_LOGS" = 1 ]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- environment of the server (and of migrate): nothing inherited but PATH -------------
PORT="${BENCH_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}"
RUN_ID="$("$PY" -c 'import secrets; print(secrets.token_hex(4))')"
BASE="http://127.0.0.1:$PORT"

APP_ENV=(
    env -i
    PATH="$PATH"
    HOME="${HOME:-/tmp}"
    LANG=C.UTF-8
    PYTHONDONTWRITEBYTECODE=1
    DEBUG=0
    SANDBOX=1
    SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')"
    JWT_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')"
    ALLOWED_HOSTS=127.0.0.1,localhost
    SECURE_SSL_REDIRECT=0
    DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB_NAME"
    REDIS_URL="$REDIS_URL_BENCH"
    CACHE_KEY_PREFIX="$CACHE_PREFIX"
    BENCH_ENDPOINTS=1
    RATELIMIT_LOGIN=0
    RATELIMIT_LOGIN_CODE=0
    LOG_LEVEL=WARNING
    READ_DOT_ENV=0
)

# --- database -----------------------------------------------------------------------
log "database $DB_NAME on $PG_HOST:$PG_PORT"
exists="$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" || die "PostgreSQL is not reachable"
if [ "$exists" != 1 ]; then
    log "creating database $DB_NAME"
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE \"$DB_NAME\"" >/dev/null
fi
log "migrating"
timeout 300 "${APP_ENV[@]}" "$PY" manage.py migrate --noinput >"$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log" >&3; die "migrate failed"; }
# Every run starts from empty tables (logins add users and tokens), so runs compare.
timeout 120 "${APP_ENV[@]}" "$PY" manage.py flush --noinput >>"$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log" >&3; die "flush failed"; }
redis_clean

# The machine is shared with the load generator, PostgreSQL and Redis; say if more is running.
idle_busy="$("$PY" bench/cpu.py idle 2 || true)"
log "machine busy before the run: ${idle_busy:-?}% of $(nproc) cores"

# --- server -------------------------------------------------------------------------
log "starting gunicorn: config/gunicorn.conf.py (gthread, $GUNICORN_THREADS threads), 2 workers on 127.0.0.1:$PORT"
"${APP_ENV[@]}" "$GUNICORN" -c config/gunicorn.conf.py config.wsgi:application \
    --workers 2 --threads "$GUNICORN_THREADS" --bind "127.0.0.1:$PORT" \
    --graceful-timeout 5 --log-level warning \
    >"$WORK/gunicorn.log" 2>&1 &
GUNICORN_PID=$!

healthy=0
for _ in $(seq 1 60); do
    kill -0 "$GUNICORN_PID" 2>/dev/null || die "gunicorn exited at start"
    if curl -fsS --max-time 2 "$BASE/healthz" >/dev/null 2>&1; then
        healthy=1
        break
    fi
    sleep 0.5
done
[ "$healthy" = 1 ] || die "no healthy /healthz within 30 s"
log "healthy: $(curl -sS --max-time 2 "$BASE/healthz")"

# --- tokens: one login, checked with one `me` ---------------------------------------------
TOKEN=""
LOGIN_USER_ID=""
login_as() { # login_as CODE: logs in with a sandbox code, sets TOKEN and LOGIN_USER_ID
    local body answer
    TOKEN="" LOGIN_USER_ID=""
    body='{"query":"mutation Login($code: String!) { wechatLogin(code: $code) { token user { id } } }",'
    body+='"variables":{"code":"'"$1"'"}}'
    answer="$(curl -sS --max-time 10 -H 'Content-Type: application/json' -d "$body" "$BASE/graphql/")" \
        || die "login request failed"
    read -r TOKEN LOGIN_USER_ID < <(printf '%s' "$answer" | "$PY" -c \
        'import json,sys; d=json.load(sys.stdin)["data"]["wechatLogin"]; print(d["token"], d["user"]["id"])' 2>/dev/null) \
        || true
    [ -n "$TOKEN" ] && [ -n "$LOGIN_USER_ID" ] || die "login with code $1 failed: $answer"
}
new_token() { # new_token SUFFIX: logs in with a fresh code (a new user), sets TOKEN, checks `me` with it
    local me
    login_as "bme$RUN_ID-$1"
    me="$(curl -sS --max-time 10 -H 'Content-Type: application/json' -H "Authorization: JWT $TOKEN" \
        -d '{"query":"{ me { id openid nickname } }"}' "$BASE/graphql/")" || die "me request failed"
    case "$me" in
        *'"me":{"id":'*) ;;
        *) die "me query failed: $me" ;;
    esac
}
# The `orders` user: always the same sandbox user o<run id> (the part of a code before ':'), so
# each login gives a fresh token of the user who owns the 60 orders bench/fixtures.py creates.
orders_token() { login_as "o$RUN_ID:$1"; }
new_token 0
log "logged in once; me answers with the token"

# --- data of the notify, orders and oa_text scenarios (bench/fixtures.py) ----------------------------
FIXTURES=("${APP_ENV[@]}" DJANGO_SETTINGS_MODULE=config.settings "$PY" "$ROOT/bench/fixtures.py")
PHASES="warmup:$(seconds "$WARMUP")"
for round in $(seq 1 "$ROUNDS"); do PHASES+=" r$round:$(seconds "$DURATION")"; done
# Always: it also counts the SQL statements of one request of each scenario.
orders_token 0
log "preparing: 60 orders of the orders user (id $LOGIN_USER_ID); pending orders, notifies and text messages for [$PHASES]"
timeout 600 "${FIXTURES[@]}" setup "$WORK" "$RUN_ID" "$LOGIN_USER_ID" "$TOKEN" "$PHASES" \
    "$(has notify_v2 && echo "$NOTIFY_RATE_V2" || echo 0)" "$(has notify_v3 && echo "$NOTIFY_RATE_V3" || echo 0)" \
    "$(has notify_alipay && echo "$NOTIFY_RATE_ALIPAY" || echo 0)" "$(has oa_text && echo "$OA_RATE" || echo 0)" \
    2>&3 || die "bench/fixtures.py setup failed"

# prepare_phase MODE PHASE: what a scenario needs just before it runs (not measured).
prepare_phase() {
    case "$1" in
        me) new_token "$2" ;;  # a fresh token for each run: the 10-minute expiry never bites
        orders) orders_token "$2" ;;
        # v3 notifies carry a timestamp the server checks (+-5 min): signed right before they are sent.
        notify_v3) timeout 300 "${FIXTURES[@]}" sign "$WORK" "$2" 2>&3 || die "signing the v3 notifies failed" ;;
        # So do text messages (officialaccount/views.py): built and signed right before they are sent.
        oa_text) timeout 120 "${FIXTURES[@]}" messages "$WORK" "$2" 2>&3 || die "building the oa_text messages failed" ;;
    esac
}

# after_phase MODE PHASE: what a scenario checks right after it ran (not measured).
after_phase() {
    case "$1" in
        # The server keeps a message's reply 300 s: checked now, not after the last round.
        oa_text) timeout 120 "${FIXTURES[@]}" replies "$WORK" "$2" >>"$WORK/verify-oa.txt" 2>&3 \
            || log "  the shared cache disagrees with the oa_text answers of $2 (see the report)" ;;
    esac
}

# --- scenarios ----------------------------------------------------------------------
# run_wrk MODE DURATION OUTFILE PHASE: wrk's output goes to OUTFILE.
run_wrk() {
    local mode="$1" duration="$2" out="$3" phase="$4" url="$BASE/graphql/"
    case "$mode" in
        bare) url="$BASE/bench/bare" ;;
        notify_v2) url="$BASE/notify/wechatpay/v2/" ;;
        notify_v3) url="$BASE/notify/wechatpay/v3/" ;;
        notify_alipay) url="$BASE/notify/alipay/" ;;
        oa_text) url="$BASE/wechat/official-account/" ;;  # each request's path (and query) is its own
    esac
    # wrk stops by itself after DURATION; the timeout is a safety net.
    # `time` records wrk's own CPU (user and system seconds) for the CPU table.
    local TIMEFORMAT='%U %S' status=0
    { time BENCH_MODE="$mode" BENCH_TOKEN="$TOKEN" BENCH_RUN="$RUN_ID$phase" BENCH_LOGIN_USERS="$LOGIN_USERS" \
        BENCH_DATA="$WORK/$mode-$phase.lines" BENCH_IDS="$out.ids" BENCH_THREADS="$THREADS" \
        timeout 600 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 5s --latency \
        -s "$ROOT/bench/wrk.lua" "$url" >"$out" 2>&1; } 2>"$out.time" || status=$?
    [ "$status" = 0 ] || { cat "$out" "$out.time" >&3; die "wrk failed for $mode"; }
}

field() { # field NAME FILE -> NAME's value on the BENCH_RESULT line
    grep '^BENCH_RESULT ' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1
}

log "warm-up: $WARMUP per scenario (wrk -t$THREADS -c$CONNECTIONS)"
for mode in $SCENARIOS; do
    prepare_phase "$mode" warmup
    run_wrk "$mode" "$WARMUP" "$WORK/warmup-$mode.txt" warmup
    after_phase "$mode" warmup
    log "  warm-up $mode: $(field rps "$WORK/warmup-$mode.txt") req/s"
done

log "measuring: $ROUNDS rounds of [$SCENARIOS], wrk -t$THREADS -c$CONNECTIONS -d$DURATION each"
spy_secs="$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; printf "%d", (n > 2 ? n - 1 : 1) }')"
for round in $(seq 1 "$ROUNDS"); do
    # Other programs on the machine skew a round: wait (bounded) until it is quiet.
    waited=0
    while [ "$QUIET_WAIT" -gt 0 ]; do
        busy="$("$PY" bench/cpu.py idle 2 || echo 0)"
        [ "${busy:-0}" -le 15 ] && break
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            log "  machine still ${busy}% busy after ${waited} s: measuring anyway"
            break
        fi
        [ "$waited" = 0 ] && log "  machine ${busy}% busy with other programs: waiting up to ${QUIET_WAIT} s"
        sleep 3
        waited=$((waited + 5))
    done
    # Fresh planner statistics, as autovacuum would keep them in production: on tables that grew
    # from empty within the run the planner otherwise misjudges (e.g. the unionid lookup of a
    # first login walks the whole primary key for ORDER BY id LIMIT 1).
    timeout 60 psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB_NAME" -qc "ANALYZE" >/dev/null \
        || log "warning: ANALYZE failed"
    # The previous round's writes flushed now, not by a checkpoint landing in some later scenario.
    timeout 120 psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB_NAME" -qc "CHECKPOINT" >/dev/null \
        || log "warning: CHECKPOINT failed (it needs a superuser or pg_checkpoint)"
    for mode in $SCENARIOS; do
        out="$WORK/r$round-$mode"
        prepare_phase "$mode" "r$round"
        spy_pid=""
        if [ -n "$PYSPY" ]; then
            # Both workers, on-CPU samples, 100 Hz; raw collapsed stacks for bench/profile_summary.py.
            timeout $((spy_secs + 30)) "$PYSPY" record --pid "$GUNICORN_PID" --subprocesses --nonblocking \
                --function --format raw --duration "$spy_secs" --output "$out.profile" >"$out.py-spy.log" 2>&1 &
            spy_pid=$!
        fi
        "$PY" bench/cpu.py snapshot "$GUNICORN_PID" "$out.cpu0" || true
        run_wrk "$mode" "$DURATION" "$out.txt" "r$round"
        "$PY" bench/cpu.py snapshot "$GUNICORN_PID" "$out.cpu1" || true
        if [ -s "$out.cpu0" ] && [ -s "$out.cpu1" ]; then
            "$PY" bench/cpu.py diff "$out.cpu0" "$out.cpu1" "$(field requests "$out.txt")" \
                "$(awk '{ print $1 + $2 }' "$out.txt.time" 2>/dev/null)" >"$out.cpu" || true
        fi
        if [ -n "$spy_pid" ]; then
            wait "$spy_pid" || log "  py-spy failed: $(tail -n 2 "$out.py-spy.log")"
        fi
        after_phase "$mode" "r$round"
        log "  round $round $mode: $(field rps "$out.txt") req/s, p99 $(field p99_ms "$out.txt") ms," \
            "$(field requests "$out.txt") requests, foreign load $(sed -n 's/.*foreign_cores=\([0-9.]*\).*/\1/p' "$out.cpu" 2>/dev/null) cores"
    done
done
if [ -n "$PYSPY" ]; then
    log "profiles: $WORK/r*-*.profile; e.g. .venv/bin/python bench/profile_summary.py $WORK/r1-me.profile"
fi

# --- the database against the notify answers -------------------------------------------------
if has notify_v2 || has notify_v3 || has notify_alipay; then
    sleep 1  # the last notifies in flight when wrk stopped are still being applied
    timeout 120 "${FIXTURES[@]}" verify "$WORK" "$PHASES" "$SCENARIOS" "$RUN_ID" >"$WORK/verify.txt" 2>&3 \
        || log "the database disagrees with the notify answers (see the report)"
fi

# --- report -------------------------------------------------------------------------
"$PY" bench/report.py "$WORK" "$ROUNDS" "$SCENARIOS" \
    "gunicorn 2 gthread workers x $GUNICORN_THREADS threads (config/gunicorn.conf.py), PostgreSQL + Redis, logins: $([ "$LOGIN_USERS" = 0 ] && echo 'each a new user' || echo "$LOGIN_USERS returning users"), wrk -t$THREADS -c$CONNECTIONS -d$DURATION x $ROUNDS rounds (after $WARMUP warm-up each), loopback, $(nproc) cores shared by all"
