#!/usr/bin/env bash
# Run by `make test` (scripts/test.sh): pgbouncer/entrypoint.sh with PGBOUNCER_SECRET_ARNS follows
# an alternating-users rotation. A fake `aws` first on PATH answers get-secret-value from canned
# JSON per secret and version stage; a fake PgBouncer (PGBOUNCER_BIN) counts the SIGHUPs it gets.
# The auth_file must hold each secret's AWSCURRENT, AWSPENDING and AWSPREVIOUS users (the first
# password of a user wins), be mode 600, and PgBouncer must be reloaded once per change, never
# when nothing changed or when the secrets cannot be read.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="pgbouncer_auth_refresh"

fail() {
  printf 'test %s ... FAILED\n  %s\n' "$NAME" "$*"
  exit 1
}

command -v jq >/dev/null || fail "jq is not installed (scripts/install-deps.sh installs it)"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bin" "$work/secrets" "$work/run"
chmod 700 "$work/run"
: >"$work/base.ini"
: >"$work/hups"

# aws secretsmanager get-secret-value --secret-id ARN --version-stage STAGE ...: prints
# $work/secrets/<last ARN component>.<STAGE>, or fails the way the CLI does.
cat >"$work/bin/aws" <<EOF
#!/usr/bin/env bash
id="" stage=""
while ((\$#)); do
  case \$1 in
    --secret-id) id="\$2"; shift ;;
    --version-stage) stage="\$2"; shift ;;
  esac
  shift
done
file="$work/secrets/\${id##*:}.\$stage"
if [[ -f $work/secrets/denied ]]; then
  echo "An error occurred (AccessDeniedException) when calling the GetSecretValue operation: denied" >&2
  exit 254
fi
[[ -f \$file ]] || { echo "An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation: no \$stage" >&2; exit 254; }
cat "\$file"; echo
EOF
# PgBouncer: writes "started", appends a line to $work/hups per SIGHUP, runs until killed.
cat >"$work/bin/fake-pgbouncer" <<EOF
#!/usr/bin/env bash
trap 'echo hup >>"$work/hups"' HUP
echo started >"$work/started"
while :; do sleep 0.05 & wait \$! || true; done
EOF
chmod +x "$work/bin/aws" "$work/bin/fake-pgbouncer"

secret() { # secret NAME STAGE USER PASSWORD
  jq -cn --arg u "$3" --arg p "$4" \
    '{engine:"postgres",host:"db.internal",port:5432,dbname:"kit",username:$u,password:$p}' \
    >"$work/secrets/$1.$2.tmp"
  mv "$work/secrets/$1.$2.tmp" "$work/secrets/$1.$2"
}
hups() { wc -l <"$work/hups" | tr -d ' '; }
# One change of the secrets, made in several writes as a rotation makes it (stages move in
# separate calls), reloads PgBouncer once, or twice when a refresh read it half-made; and
# once the file is current, never again. settled BEFORE WHAT: BEFORE is the count before
# the change. Sets $reloads to the count after it.
settled() {
  sleep 1
  reloads="$(hups)"
  ((reloads - $1 >= 1 && reloads - $1 <= 2)) || fail "$((reloads - $1)) reloads for $2, expected 1 (2 if read half-made)"
  sleep 1
  [[ $(hups) == "$reloads" ]] || fail "$(($(hups) - reloads)) more reloads after $2 while nothing changed"
}
auth() { cat "$work/run/userlist.txt"; }
# Waits up to 5 s for the auth file to equal $1.
wait_for_auth() {
  for _ in $(seq 50); do
    [[ $(auth 2>/dev/null) == "$1" ]] && return 0
    sleep 0.1
  done
  fail "$2: the auth file is
$(auth)
expected
$1"
}

# Before any rotation: ingest has only AWSCURRENT; search is mid-rotation (AWSPENDING is its
# clone); purge's AWSPREVIOUS repeats its current user with an older password.
secret ingest AWSCURRENT kit_ingest 'in"gest1'
secret search AWSCURRENT kit_search search1
secret search AWSPENDING kit_search_clone search2
secret purge AWSCURRENT kit_purge purge2
secret purge AWSPREVIOUS kit_purge purge1

# Clients always get TLS: a certificate of the test's own stands in for the issued one.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=pgbouncer.kit.internal -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1 \
  || fail "openssl could not make a test certificate"

arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret"
PATH="$work/bin:$PATH" \
  DB_HOST=db.internal DB_NAME=kit SERVER_TLS_SSLMODE=require \
  CLIENT_TLS_CERT_FILE="$work/tls.crt" CLIENT_TLS_KEY_FILE="$work/tls.key" \
  PGBOUNCER_BASE_INI="$work/base.ini" PGBOUNCER_RUN_DIR="$work/run" \
  PGBOUNCER_BIN="$work/bin/fake-pgbouncer" AUTH_REFRESH_S=0.1 \
  PGBOUNCER_SECRET_ARNS="$arn:ingest $arn:search $arn:purge" \
  bash "$ROOT/pgbouncer/entrypoint.sh" 2>"$work/entrypoint.log" &
pid=$!
for _ in $(seq 50); do [[ -f $work/started ]] && break; sleep 0.1; done
[[ -f $work/started ]] || fail "PgBouncer did not start: $(cat "$work/entrypoint.log")"

expected='"kit_ingest" "in""gest1"
"kit_search" "search1"
"kit_search_clone" "search2"
"kit_purge" "purge2"'
wait_for_auth "$expected" "at start"
mode="$(stat -c %a "$work/run/userlist.txt")"
[[ $mode == 600 ]] || fail "the auth file's mode is $mode, not 600"
grep -q 'auth_file = .*/userlist.txt' "$work/run/pgbouncer.ini" || fail "pgbouncer.ini does not use the auth file"
if grep -q 'search1\|search2\|gest1' "$work/entrypoint.log"; then fail "a password reached the log"; fi

# Nothing changes for 1 s (10 refreshes): no reload.
sleep 1
[[ $(hups) == 0 ]] || fail "$(hups) reloads while no secret changed"

# search's rotation finishes: the clone is AWSCURRENT, the old user AWSPREVIOUS, no AWSPENDING.
secret search AWSPREVIOUS kit_search search1
secret search AWSCURRENT kit_search_clone search2
rm "$work/secrets/search.AWSPENDING"
expected_after='"kit_ingest" "in""gest1"
"kit_search_clone" "search2"
"kit_search" "search1"
"kit_purge" "purge2"'
wait_for_auth "$expected_after" "after search's rotation"
settled 0 "search's rotation"

# ingest's rotation starts: its clone appears as AWSPENDING, accepted at once.
secret ingest AWSPENDING kit_ingest_clone ingest2
expected_pending='"kit_ingest" "in""gest1"
"kit_ingest_clone" "ingest2"
"kit_search_clone" "search2"
"kit_search" "search1"
"kit_purge" "purge2"'
wait_for_auth "$expected_pending" "with ingest's AWSPENDING"
settled "$reloads" "ingest's AWSPENDING"

# Secrets Manager unreachable or access denied: the file stays, no reload, the error is logged.
touch "$work/secrets/denied"
secret ingest AWSCURRENT kit_ingest_clone ingest2
sleep 1
[[ $(auth) == "$expected_pending" ]] || fail "the auth file changed while the secrets could not be read"
[[ $(hups) == "$reloads" ]] || fail "a reload while the secrets could not be read"
grep -q 'AccessDeniedException' "$work/entrypoint.log" || fail "the read failure is not logged"
mode="$(stat -c %a "$work/run/userlist.txt")"
[[ $mode == 600 ]] || fail "the auth file's mode is $mode after rewrites, not 600"

printf 'test %s ... ok\n' "$NAME"
