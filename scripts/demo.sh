#!/usr/bin/env bash
# `make demo`: the three functions under the real Lambda runtime emulator, driven end to end.
# Builds the functions, starts `cargo lambda watch` in the background (log: .kit/log/demo-watch.log),
# waits until it answers, runs `kit-dev demo` (ingest, searches, purge, summary), and always stops the
# emulator and every function process it started. Exits with the demo's status.
#
# Needs the stack's settings in the environment (make demo exports .kit/env; by hand:
# set -a; . .kit/env; set +a). Overridable: KIT_DEMO_PORT (default 9753), KIT_DEMO_RECORDS (2000),
# KIT_DEMO_NAMESPACE (demo), KIT_DEMO_READY_TIMEOUT (seconds, 300), RETENTION_DAYS (30), RUST_LOG (warn).
# Extra arguments go to `kit-dev demo` (see `cargo run -p kit-dev -- demo --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ADDRESS=127.0.0.1
PORT="${KIT_DEMO_PORT:-9753}"
RECORDS="${KIT_DEMO_RECORDS:-2000}"
NAMESPACE="${KIT_DEMO_NAMESPACE:-demo}"
READY_TIMEOUT="${KIT_DEMO_READY_TIMEOUT:-300}"
WATCH_LOG=.kit/log/demo-watch.log
FUNCTIONS=(ingest search purge)

step() { printf '==> %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# Each function logs in as its own role: INGEST_, SEARCH_ and PURGE_DATABASE_URL (from .kit/env) win
# over DATABASE_URL in the one environment `cargo lambda watch` gives all three functions.
for variable in DATABASE_URL INGEST_DATABASE_URL SEARCH_DATABASE_URL PURGE_DATABASE_URL; do
  [[ -n ${!variable:-} ]] || fail "$variable is not set: run make demo, or: set -a; . .kit/env; set +a"
done
command -v cargo-lambda >/dev/null \
  || fail "cargo-lambda is not on PATH: run make deps, then source .kit/env (it adds \$KIT_CACHE/venv/bin)"

# Sends `GET $1` to the emulator and prints the HTTP status code; fails when nothing answers.
http_status() {
  (
    exec 3<>"/dev/tcp/$ADDRESS/$PORT" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$1" "$ADDRESS" "$PORT" >&3
    IFS=' ' read -r -t 60 _ code _ <&3 || exit 1
    echo "$code"
  ) 2>/dev/null
}

if (exec 3<>"/dev/tcp/$ADDRESS/$PORT") 2>/dev/null; then
  fail "port $ADDRESS:$PORT is already in use (another cargo lambda watch?): pick another with KIT_DEMO_PORT"
fi

# The binaries exactly as `cargo lambda watch` runs them (`cargo run --bin <name>`: one package at a
# time, so features resolve the same and watch does not rebuild on the first invocation).
step "build: ${FUNCTIONS[*]} and kit-dev"
for function in "${FUNCTIONS[@]}"; do cargo build --locked --bin "$function"; done
cargo build --locked -p kit-dev

# --- the emulator ------------------------------------------------------------------------

# Every process below $1, depth first (the function instances run in their own process groups).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

stop_watch() {
  local status=$? pids pid i
  trap - EXIT INT TERM
  if [[ -n ${WATCH_PID:-} ]] && kill -0 "$WATCH_PID" 2>/dev/null; then
    step "stopping cargo lambda watch (pid $WATCH_PID)"
    pids="$(descendants "$WATCH_PID")"
    kill -TERM -- "-$WATCH_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$WATCH_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$WATCH_PID" 2>/dev/null || true
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    wait "$WATCH_PID" 2>/dev/null || true
  fi
  exit "$status"
}
trap stop_watch EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$(dirname "$WATCH_LOG")"
step "starting cargo lambda watch on $ADDRESS:$PORT (log: $WATCH_LOG)"
# setsid: its own process group, so the trap can stop it and its children as a whole. No reload:
# the functions must not restart halfway through because someone saved a file.
# AUTH_MODE=none: the demo's Function URL events carry no authorizer, so the body names the
# namespace (local development only; deployed APIs use jwt, lambda or iam).
RUST_LOG="${RUST_LOG:-warn}" RETENTION_DAYS="${RETENTION_DAYS:-30}" AUTH_MODE=none \
  setsid cargo lambda watch --locked --ignore-changes --invoke-address "$ADDRESS" --invoke-port "$PORT" \
  >"$WATCH_LOG" 2>&1 </dev/null &
WATCH_PID=$!

# Ready when the search function answers its health check through the emulator (this also starts
# that function and reaches the database).
step "waiting for the emulator and the search function (up to ${READY_TIMEOUT}s)"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$(http_status /lambda-url/search/health || true)" == 200 ]]; do
  if ! kill -0 "$WATCH_PID" 2>/dev/null; then
    tail -n 30 "$WATCH_LOG" >&2 || true
    fail "cargo lambda watch exited early; log: $WATCH_LOG"
  fi
  if ((SECONDS >= deadline)); then
    tail -n 30 "$WATCH_LOG" >&2 || true
    fail "the search function did not answer GET /health with 200 within ${READY_TIMEOUT}s; log: $WATCH_LOG"
  fi
  sleep 1
done

step "running the demo"
# RUST_LIB_BACKTRACE=0: a failed step prints its error chain, not a backtrace (panics still get one).
RUST_LIB_BACKTRACE=0 cargo run --locked -q -p kit-dev -- demo --address "$ADDRESS" --port "$PORT" --records "$RECORDS" \
  --namespace "$NAMESPACE" --work-dir .kit/demo --watch-log "$WATCH_LOG" "$@"
