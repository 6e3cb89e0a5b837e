#!/usr/bin/env bash
# Run by `make test` (scripts/test.sh): a throwaway copy of this checkout in the places a new user
# clones into — a private (0700) folder like root's home, under a path with spaces, deep enough that
# a socket inside it would pass the 107-byte Unix socket limit — reaches `make up` and a working
# `kit migrate status`, with no permission change. Then `make status`, `make down` and `make wipe`
# find its cluster again, and it never shares the cluster of the checkout that runs the test.
#
# The copy holds the working tree's files (tracked and untracked, not ignored), as a clone of it
# would. It runs on its own ports (KIT_CLONE_TEST_PG_PORT, KIT_CLONE_TEST_PGBOUNCER_PORT) and
# builds into this checkout's target directory, so only the workspace's own crates compile again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="clone_location"
PG_PORT="${KIT_CLONE_TEST_PG_PORT:-55499}"
PGBOUNCER_PORT="${KIT_CLONE_TEST_PGBOUNCER_PORT:-56499}"

fail() {
  printf 'test %s ... FAILED\n  %s\n' "$NAME" "$*"
  exit 1
}

home="$(mktemp -d)" # mode 0700, as root's home directory is on Debian
clone="$home/my projects/$(printf 'level-%02d/' {1..8})pgvector kit"
cleanup() {
  if [[ -f $clone/Makefile ]]; then make -C "$clone" wipe >/dev/null 2>&1 || true; fi
  rm -rf "$home"
}
trap cleanup EXIT

mkdir -p "$clone"
chmod 700 "$home"
(
  cd "$ROOT"
  git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' file; do [[ -e $file ]] && printf '%s\0' "$file"; done \
    | tar --null -T - -cf -
) | tar -xf - -C "$clone"

export KIT_PG_PORT="$PG_PORT" KIT_PGBOUNCER_PORT="$PGBOUNCER_PORT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The caller's stack settings must not leak into the copy's commands.
unset DATABASE_URL DATABASE_ADMIN_URL KIT_CLUSTER_DIR

log="$home/make.log"
run() {
  printf '\n$ %s\n' "$*" >>"$log"
  "$@" >>"$log" 2>&1 || { tail -n 30 "$log" | sed 's/^/  | /'; fail "'$*' failed in $clone (log above)"; }
}

run make -C "$clone" up
if grep -q "could not change directory" "$log"; then
  fail "a tool running as the database's OS user complained about the private checkout: $(grep "could not change directory" "$log" | head -n 1)"
fi
[[ $(stat -c %a "$home") == 700 ]] || fail "the private folder's mode changed to $(stat -c %a "$home")"

cluster="$(cd "$clone" && scripts/stack.sh dir)"
[[ $cluster != "$clone"* ]] || fail "the cluster lives inside the private checkout: $cluster"
main_cluster="$(cd "$ROOT" && scripts/stack.sh dir)"
[[ $cluster != "$main_cluster" ]] || fail "the copy shares the cluster of $ROOT: $cluster"
[[ -s $cluster/pgdata/PG_VERSION ]] || fail "no cluster data in $cluster/pgdata"

status="$(
  cd "$clone"
  set -a
  # shellcheck source=/dev/null
  . .kit/env
  set +a
  cargo run --locked -q -p kit -- migrate status 2>&1
)" || fail "kit migrate status failed: $status"
grep -Eq '^0001 .* applied$' <<<"$status" || fail "kit migrate status does not show 0001 applied: $status"
if grep -q pending <<<"$status"; then fail "migrations left pending after make up: $status"; fi

make -C "$clone" status >"$home/status.txt" 2>&1 || true
grep -q "^postgres:  running" "$home/status.txt" || fail "make status does not see the running cluster: $(cat "$home/status.txt")"
run make -C "$clone" down
if (: <>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then fail "PostgreSQL still listens on $PG_PORT after make down"; fi
[[ -s $cluster/pgdata/PG_VERSION ]] || fail "make down deleted the data"
run make -C "$clone" wipe
[[ ! -e $cluster ]] || fail "make wipe left $cluster"

printf 'test %s ... ok\n' "$NAME"
