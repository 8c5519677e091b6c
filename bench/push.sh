#!/usr/bin/env bash
# Push benchmark: a template push of 10,000 deliveries sent by 2 Celery workers (notifications.tasks, Redis
# broker) to the sandbox over real HTTP (gunicorn, SANDBOX=1), side by side in one run with a bare loop posting
# the same 10,000 messages to the same sandbox through one pooled requests.Session; then the shared rate limit
# (PUSH_RATE_PER_SECOND) checked on one more batch. See bench/README.md ("Pushes").
#
#   bash bench/push.sh            (from the repository root)
#
# Knobs (environment, defaults in brackets):
#   BENCH_PUSH_USERS [10000]   bound users, one delivery each per batch
#   BENCH_PUSH_ROUNDS [3]      throughput rounds: each the bare loop, then a batch by the workers
#   BENCH_PUSH_FAST [100000]   PUSH_RATE_PER_SECOND of the throughput rounds: high enough not to bind
#   BENCH_PUSH_RATE [100]      PUSH_RATE_PER_SECOND of the rate phase: below what the workers can do (110-275/s
#                              on a shared 2-core machine)
#   BENCH_PORT [a free one]    BENCH_DB [wxbackend_bench_push]   BENCH_KEEP_LOGS=1 keeps the logs
# Exit status: 0 when every message was answered errcode 0, every batch ended DONE with all sent and no clock
# second of the rate phase (on the clock, or any sliding 1 s window) brought the sandbox more than the rate; 1
# otherwise.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"
GUNICORN="$ROOT/.venv/bin/gunicorn"
CELERY="$ROOT/.venv/bin/celery"
USERS="${BENCH_PUSH_USERS:-10000}"
ROUNDS="${BENCH_PUSH_ROUNDS:-3}"
FAST="${BENCH_PUSH_FAST:-100000}"
RATE="${BENCH_PUSH_RATE:-100}"
DB_NAME="${BENCH_DB:-wxbackend_bench_push}"
KEEP_LOGS="${BENCH_KEEP_LOGS:-0}"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
# Its own Redis database: the Celery broker's keys are not prefixed, so they must not meet anyone else's.
REDIS_URL_BENCH="redis://127.0.0.1:6379/3"
CACHE_PREFIX=benchpush

exec 3>&2
log() { printf '[push %s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }
die() { log "ERROR: $*"; exit 1; }

case "$USERS$ROUNDS$FAST$RATE" in ''|*[!0-9]*) die "BENCH_PUSH_* must be numbers" ;; esac
[ -x "$PY" ] && [ -x "$GUNICORN" ] && [ -x "$CELERY" ] || die "no venv with gunicorn and celery: make install"
command -v psql >/dev/null || die "psql not found"
command -v curl >/dev/null || die "curl not found"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/wxpush.XXXXXX")"
GUNICORN_PID=""
WORKER_PIDS=()
FAILED=0

stop_pid() { # stop_pid PID NAME: TERM, up to 10 s, then KILL
    kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$1" 2>/dev/null; then
        log "$2 (pid $1) did not stop in 10 s: killing it"
        kill -KILL "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
}

redis_clean() {
    # This benchmark's cache keys (prefix "benchpush:") and the broker's queues, in Redis db 3 only.
    timeout 60 env -i PATH="$PATH" "$PY" - "$REDIS_URL_BENCH" "$CACHE_PREFIX" <<'EOF' 2>&3 || log "warning: redis cleanup failed"
import sys

import redis

r = redis.Redis.from_url(sys.argv[1], socket_timeout=5)
removed = 0
for pattern in (sys.argv[2] + ":*", "celery*", "_kombu.*", "unacked*"):
    keys = list(r.scan_iter(match=pattern, count=1000))
    for start in range(0, len(keys), 1000):
        removed += r.unlink(*keys[start : start + 1000])
print(f"[push] redis: removed {removed} keys of the benchmark", file=sys.stderr)
EOF
}

stop_workers() {
    local pid
    for pid in "${WORKER_PIDS[@]}"; do stop_pid "$pid" "celery worker"; done
    WORKER_PIDS=()
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_workers
    [ -n "$GUNICORN_PID" ] && stop_pid "$GUNICORN_PID" gunicorn
    redis_clean
    if [ "$KEEP_LOGS" = 1 ] || [ "$status" -ne 0 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

PORT="${BENCH_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}"
BASE="http://127.0.0.1:$PORT"

# Nothing inherited but PATH: the server's environment is bench/run.sh's.
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
    LOG_LEVEL=WARNING
    READ_DOT_ENV=0
)
# The workers' (and push.py's): WeChat's API is the sandbox behind gunicorn, over HTTP (config/providers.py
# mounts its in-process transport only for https://api.weixin.qq.com).
PUSH_ENV=("${APP_ENV[@]}" WECHAT_API_BASE_URL="$BASE/sandbox/wechat" DJANGO_SETTINGS_MODULE=config.settings)
PUSH_PY=("${PUSH_ENV[@]}" "$PY" "$ROOT/bench/push.py")

field() { # field NAME LINE -> NAME's value in a BENCH_PUSH line
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1
}
rss() { # rss PID -> "main/child" resident MB of a prefork worker (main process and its one pool process)
    local child main_kb child_kb
    child="$(pgrep -P "$1" | head -n1 || true)"
    main_kb="$(ps -o rss= -p "$1" | tr -d ' ')"
    child_kb="$([ -n "$child" ] && ps -o rss= -p "$child" | tr -d ' ' || echo 0)"
    awk -v m="$main_kb" -v c="$child_kb" 'BEGIN { printf "%.1f/%.1f", m / 1024, c / 1024 }'
}
rss_all() { local pid out=""; for pid in "${WORKER_PIDS[@]}"; do out+="$(rss "$pid") "; done; printf '%s' "${out% }"; }

start_workers() { # start_workers RATE: two workers, one process each, sharing the rate limit through Redis
    local name pid ready
    for name in a b; do
        "${PUSH_ENV[@]}" PUSH_RATE_PER_SECOND="$1" "$CELERY" -A config worker -c 1 -n "push-$name@%h" \
            --without-gossip --without-mingle -l info >"$WORK/worker-$name-$1.log" 2>&1 &
        WORKER_PIDS+=("$!")
    done
    for name in a b; do
        ready=0
        for _ in $(seq 1 120); do
            if grep -q "push-$name@.* ready" "$WORK/worker-$name-$1.log"; then ready=1; break; fi
            sleep 0.5
        done
        [ "$ready" = 1 ] || { tail -n 20 "$WORK/worker-$name-$1.log" >&3; die "worker $name not ready in 60 s"; }
    done
    for pid in "${WORKER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a worker exited at start"; done
}

check_batch() { # check_batch LINE: DONE, everything sent
    if [ "$(field status "$1")" != DONE ] || [ "$(field sent "$1")" != "$USERS" ]; then
        log "  batch not DONE with all $USERS sent: $1"
        FAILED=1
    fi
}

# --- database, Redis ----------------------------------------------------------------------
log "database $DB_NAME on $PG_HOST:$PG_PORT, Redis db 3"
exists="$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" || die "PostgreSQL is not reachable"
if [ "$exists" != 1 ]; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE \"$DB_NAME\"" >/dev/null
fi
timeout 300 "${APP_ENV[@]}" "$PY" manage.py migrate --noinput >"$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log" >&3; die "migrate failed"; }
timeout 120 "${APP_ENV[@]}" "$PY" manage.py flush --noinput >>"$WORK/migrate.log" 2>&1 \
    || { cat "$WORK/migrate.log" >&3; die "flush failed"; }
redis_clean
log "machine busy before the run: $("$PY" bench/cpu.py idle 2 || echo '?')% of $(nproc) cores"

# --- the server: the sandbox over HTTP ----------------------------------------------------
# bench/push_gunicorn.py: production's settings plus each template message's arrival time, for the rate check.
"${APP_ENV[@]}" BENCH_PUSH_ARRIVALS="$WORK/arrivals" "$GUNICORN" -c bench/push_gunicorn.py config.wsgi:application \
    --workers 2 --bind "127.0.0.1:$PORT" --graceful-timeout 5 --log-level warning >"$WORK/gunicorn.log" 2>&1 &
GUNICORN_PID=$!
healthy=0
for _ in $(seq 1 60); do
    kill -0 "$GUNICORN_PID" 2>/dev/null || die "gunicorn exited at start"
    if curl -fsS --max-time 2 "$BASE/healthz" >/dev/null 2>&1; then healthy=1; break; fi
    sleep 0.5
done
[ "$healthy" = 1 ] || die "no healthy /healthz within 30 s"
log "gunicorn (bench/push_gunicorn.py: config/gunicorn.conf.py + arrival times, 2 workers) on $BASE; the sandbox's WeChat API at $BASE/sandbox/wechat"

line="$(timeout 300 "${PUSH_PY[@]}" users "$USERS")" || die "creating the users failed"
log "$USERS users bound to the official account $(field appid "$line")"
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$DB_NAME" -qc "ANALYZE" >/dev/null || true

# --- throughput: the bare loop and the workers, side by side --------------------------------
LOOP_RATES=() WORKER_RATES=() RSS_ROUNDS=() RSS_START=""
if [ "$ROUNDS" -gt 0 ]; then
    log "throughput rounds: PUSH_RATE_PER_SECOND=$FAST (does not bind), 2 workers (celery -A config worker -c 1, twice)"
    start_workers "$FAST"
    RSS_START="$(rss_all)"
    log "  workers ready; RSS main/pool MB: $RSS_START"
fi
for round in $(seq 1 "$ROUNDS"); do
    log "  machine busy before round $round: $("$PY" bench/cpu.py idle 2 || echo '?')% of $(nproc) cores"
    line="$(timeout 600 "${PUSH_PY[@]}" loop "$BASE")" || die "the bare loop failed"
    [ "$(field failed "$line")" = 0 ] || { log "  bare loop: answers not errcode 0: $line"; FAILED=1; }
    LOOP_RATES+=("$(field rate "$line")")
    log "  round $round bare loop: $(field messages "$line") messages in $(field seconds "$line") s = $(field rate "$line")/s"
    line="$(timeout 900 "${PUSH_PY[@]}" batch 600)" || die "the batch failed"
    check_batch "$line"
    WORKER_RATES+=("$(field rate "$line")")
    RSS_ROUNDS+=("$(rss_all)")
    log "  round $round workers: batch $(field batch "$line") $(field status "$line") sent $(field sent "$line")" \
        "($(field deliveries "$line")) in $(field seconds "$line") s (created in $(field created_s "$line") s)" \
        "= $(field rate "$line")/s; RSS main/pool MB: ${RSS_ROUNDS[-1]}"
done
stop_workers

# --- the shared rate limit ---------------------------------------------------------------------
log "rate phase: PUSH_RATE_PER_SECOND=$RATE, 2 fresh workers"
start_workers "$RATE"
RATE_RSS_START="$(rss_all)"
line="$(timeout 900 "${PUSH_PY[@]}" batch 600)" || die "the rate batch failed"
check_batch "$line"
RATE_RSS_END="$(rss_all)"
RATE_BATCH="$(field batch "$line")"
log "  batch $RATE_BATCH: sent $(field sent "$line") in $(field seconds "$line") s = $(field rate "$line")/s;" \
    "RSS main/pool MB $RATE_RSS_START -> $RATE_RSS_END"
stop_workers
seconds_lines="$(timeout 120 "${PUSH_PY[@]}" seconds "$RATE_BATCH" "$WORK"/arrivals.*)" || die "counting per second failed"
ARRIVED="$(grep arrived_ <<<"$seconds_lines")"
SENT_AT="$(grep sent_ <<<"$seconds_lines")"
MAX_SECOND="$(field arrived_max_second "$ARRIVED")"
[ "$(field arrived_count "$ARRIVED")" = "$USERS" ] || { log "  the sandbox saw $(field arrived_count "$ARRIVED") sends"; FAILED=1; }
MAX_WINDOW="$(field arrived_max_window "$ARRIVED")"
[ "$MAX_SECOND" -le "$RATE" ] || { log "  a clock second exceeded $RATE at the sandbox: $MAX_SECOND"; FAILED=1; }
[ "$MAX_WINDOW" -le "$RATE" ] || { log "  a sliding second exceeded $RATE at the sandbox: $MAX_WINDOW"; FAILED=1; }

# --- report --------------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
LOOP_MEDIAN="$([ "$ROUNDS" -gt 0 ] && median "${LOOP_RATES[@]}" || echo 0)"
WORKER_MEDIAN="$([ "$ROUNDS" -gt 0 ] && median "${WORKER_RATES[@]}" || echo 0)"
{
    echo "wxbackend push benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by all"
    echo "gunicorn 2 workers (config/gunicorn.conf.py) serving the sandbox; 2 Celery workers (-c 1 each), Redis broker"
    echo "$USERS template messages per batch / loop, over HTTP to $BASE/sandbox/wechat"
    echo
    if [ "$ROUNDS" -gt 0 ]; then
        printf '%-34s %s\n' "bare loop msg/s per round" "${LOOP_RATES[*]} (median $LOOP_MEDIAN)"
        printf '%-34s %s\n' "2 workers msg/s per round" "${WORKER_RATES[*]} (median $WORKER_MEDIAN)"
        printf '%-34s' "workers / bare loop per round"
        for i in "${!LOOP_RATES[@]}"; do awk -v w="${WORKER_RATES[$i]}" -v l="${LOOP_RATES[$i]}" 'BEGIN { printf " %.2f", w / l }'; done
        awk -v w="$WORKER_MEDIAN" -v l="$LOOP_MEDIAN" 'BEGIN { printf " (medians: %.2fx; target >= 0.5x)\n", w / l }'
        printf '%-34s %s\n' "worker RSS MB main/pool, ready" "$RSS_START"
        for i in "${!RSS_ROUNDS[@]}"; do printf '%-34s %s\n' "  after round $((i + 1))" "${RSS_ROUNDS[$i]}"; done
        echo
    fi
    echo "rate phase: PUSH_RATE_PER_SECOND=$RATE, batch $RATE_BATCH: $line" | sed 's/BENCH_PUSH //'
    printf '%-34s %s -> %s\n' "worker RSS MB main/pool" "$RATE_RSS_START" "$RATE_RSS_END"
    for kind in arrived sent; do
        line="$([ "$kind" = arrived ] && echo "$ARRIVED" || echo "$SENT_AT")"
        [ "$kind" = arrived ] && echo "received by the sandbox per clock second: $(field arrived_seconds "$line")" \
            || echo "deliveries' sent_at per clock second:     $(field sent_seconds "$line")"
        echo "  $(field "${kind}_count" "$line") messages; max in a clock second $(field "${kind}_max_second" "$line") (limit $RATE)," \
            "median full second $(field "${kind}_median_second" "$line"), max in any sliding 1 s window $(field "${kind}_max_window" "$line")"
    done
} | tee "$WORK/report.txt"
[ "$FAILED" = 0 ] || die "some messages or batches went wrong (see above)"
