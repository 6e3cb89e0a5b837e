#!/usr/bin/env bash
# The project-local stack: a PostgreSQL 15 cluster with pgvector, and PgBouncer in front of it in
# transaction pooling. Needs scripts/install-deps.sh first.
#
#   scripts/stack.sh up      init (first time), start both, ensure the admin role and the kit database,
#                            migrate, create the functions' login roles (kit roles apply --local), write .kit/env
#   scripts/stack.sh down    stop both, keep the data
#   scripts/stack.sh status  say what runs and where (exit 0 only when both run)
#   scripts/stack.sh wipe    down, then delete the cluster (data, logs, server configs)
#   scripts/stack.sh env     print the path of the env file (source it for DATABASE_URL and friends)
#   scripts/stack.sh dir     print the cluster's directory
#   scripts/stack.sh pg-restart fast|immediate   restart PostgreSQL (fault tests)
#   scripts/stack.sh pgbouncer-kill              SIGKILL PgBouncer; `up` starts it again (fault tests)
#
# Where things live:
#   .kit/ in the checkout (gitignored), readable by the invoking user only: env (the URLs),
#     secrets/ (generated passwords), the lock, test and demo logs.
#   The cluster directory, outside the checkout so that the database's OS user can reach it even
#     when the checkout sits in a private folder (root's 0700 home, a mktemp -d): as root
#     $KIT_CACHE/clusters/<checkout name>-<hash of its path>, otherwise
#     ${XDG_STATE_HOME:-~/.local/state}/pgvector-lambda-kit/clusters/<...>; KIT_CLUSTER_DIR
#     overrides. It holds pgdata/, run/ (sockets, pid files), log/, and the PgBouncer files.
#     One checkout, one cluster: two clones never share one (give them different ports).
#
# A private stack: KIT_ENV_FILE set, with its own KIT_CLUSTER_DIR and ports (the fault tests' cluster,
#   dev/support/src/private_stack.rs) writes its env file there and leaves the checkout's .kit/env,
#   .kit/cluster and any legacy cluster alone. It shares .kit/secrets (the same passwords).
# KIT_BIN: a built `kit` to run instead of `cargo run -p kit`, for callers inside `cargo test` (which
#   holds the target directory's lock while its tests run).
# Ports: KIT_PG_PORT (PostgreSQL, default 55432) and KIT_PGBOUNCER_PORT (default 56432), 127.0.0.1 only.
# Passwords are generated on the first `up` and kept in .kit/secrets (mode 600), never in the repo:
# one for the admin role and one per function login role (kit.toml's [functions.*] db_role).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIT_DIR="$ROOT/.kit"
KIT_CACHE="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}"
PG_PORT="${KIT_PG_PORT:-55432}"
PGBOUNCER_PORT="${KIT_PGBOUNCER_PORT:-56432}"
PG_BIN="/usr/lib/postgresql/15/bin"
PGBOUNCER="$KIT_CACHE/pgbouncer/bin/pgbouncer"
BASE_PGBOUNCER_INI="$ROOT/pgbouncer/pgbouncer.ini"

# PostgreSQL and PgBouncer refuse to run as root: as root, they run as the postgres OS user.
if [[ $EUID -eq 0 ]]; then DB_OS_USER=postgres; else DB_OS_USER="$(id -un)"; fi

# The cluster's directory for this checkout: a readable name plus a hash of the checkout's path.
default_cluster_dir() {
  local name hash base
  name="$(basename "$ROOT")"
  name="${name//[^A-Za-z0-9_.-]/_}"
  name="${name:0:24}"
  hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  if [[ $EUID -eq 0 ]]; then base="$KIT_CACHE/clusters"
  else base="${XDG_STATE_HOME:-$HOME/.local/state}/pgvector-lambda-kit/clusters"; fi
  echo "$base/$name-$hash"
}
CLUSTER_DIR="${KIT_CLUSTER_DIR:-$(default_cluster_dir)}"

SECRETS_DIR="$KIT_DIR/secrets"
ENV_FILE="${KIT_ENV_FILE:-$KIT_DIR/env}"
if [[ -n ${KIT_ENV_FILE:-} ]]; then PRIVATE=true; else PRIVATE=false; fi
PGDATA="$CLUSTER_DIR/pgdata"
RUN_DIR="$CLUSTER_DIR/run"
LOG_DIR="$CLUSTER_DIR/log"
OWNER_FILE="$CLUSTER_DIR/checkout"
PGBOUNCER_INI="$CLUSTER_DIR/pgbouncer.ini"
PGBOUNCER_BASE_COPY="$CLUSTER_DIR/pgbouncer-base.ini"
PGBOUNCER_AUTH_FILE="$CLUSTER_DIR/pgbouncer-auth.txt"
PGBOUNCER_PID_FILE="$RUN_DIR/pgbouncer.pid"
# TLS on both hops, verified: a private CA made for this cluster signs one server certificate
# (IP 127.0.0.1, DNS localhost) that PostgreSQL and PgBouncer present. Clients and PgBouncer
# verify it against the CA (sslmode=verify-full); only the CA's key is private to the invoker.
TLS_DIR="$CLUSTER_DIR/tls"
CA_CERT="$TLS_DIR/ca.crt"
CA_KEY="$TLS_DIR/ca.key"
SERVER_CERT="$TLS_DIR/server.crt"
SERVER_KEY="$TLS_DIR/server.key"
# Where the cluster lived before it moved out of the checkout (moved on the next `up`).
LEGACY_PGDATA="$KIT_DIR/pgdata"

DATABASE=kit
ADMIN_ROLE=kit_admin # superuser: migrations, test databases, admin work (direct to PostgreSQL)
LEGACY_APP_ROLE=kit_app # the one role every function used before they had their own (dropped)
FUNCTIONS=(ingest search purge)

step() { printf '==> %s\n' "$*"; }
fail() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# Closes the lock's descriptor: a daemon inheriting it would hold the lock for its whole life.
# From /: the checkout may be a folder that OS user cannot enter (psql would say so).
as_db_user() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u "$DB_OS_USER" -- "$@" 9>&-); else "$@" 9>&-; fi
}

# A directory owned by the OS user the servers run as.
db_user_dir() {
  local mode="$1" dir="$2"
  if [[ $EUID -eq 0 ]]; then install -d -m "$mode" -o "$DB_OS_USER" -g "$(id -gn "$DB_OS_USER")" "$dir"
  else install -d -m "$mode" "$dir"; fi
}

# psql as the cluster's bootstrap superuser, over the Unix socket (peer authentication).
superuser_psql() {
  as_db_user "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$PG_PORT" -U "$DB_OS_USER" -d postgres "$@"
}

read_password() { cat "$SECRETS_DIR/$1.password"; }
# Every URL verifies the server's certificate against the cluster's CA.
tls_params() { echo "sslmode=verify-full&sslrootcert=${CA_CERT// /%20}"; }
admin_url() { echo "postgres://$ADMIN_ROLE:$1@127.0.0.1:$PG_PORT/$DATABASE?$(tls_params)"; }
# A function's URL through PgBouncer, as its own login role.
function_url() {
  local role
  role="$(function_role "$1")"
  echo "postgres://$role:$(read_password "$role")@127.0.0.1:$PGBOUNCER_PORT/$DATABASE?$(tls_params)"
}

# A function's login role: kit.toml's [functions.<name>] db_role (what `kit roles apply` creates).
function_role() {
  local role
  role="$(awk -v section="[functions.$1]" '
    /^[[:space:]]*\[/ { inside = ($1 == section) }
    inside && /^[[:space:]]*db_role[[:space:]]*=/ { sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; exit }
  ' "$ROOT/kit.toml")"
  [[ $role =~ ^[a-z_][a-z0-9_]*$ ]] || fail "kit.toml: no valid [functions.$1] db_role (found '$role')"
  echo "$role"
}

function_roles() {
  local function
  for function in "${FUNCTIONS[@]}"; do function_role "$function"; done
}

check_prerequisites() {
  [[ -x $PG_BIN/postgres ]] || fail "PostgreSQL 15 is not installed: run scripts/install-deps.sh (or make deps)"
  [[ -x $PGBOUNCER ]] || fail "PgBouncer is not built in $PGBOUNCER: run scripts/install-deps.sh (or make deps)"
  [[ -r $BASE_PGBOUNCER_INI ]] || fail "missing $BASE_PGBOUNCER_INI (rendered from kit.toml)"
  check_base_pgbouncer_config
}

prepare_directories() {
  install -d -m 700 "$KIT_DIR" "$SECRETS_DIR"
  claim_cluster_dir
  db_user_dir 755 "$RUN_DIR"
  db_user_dir 755 "$LOG_DIR"
  as_db_user test -x "$RUN_DIR" \
    || fail "the $DB_OS_USER OS user cannot reach $CLUSTER_DIR: set KIT_CLUSTER_DIR to a folder whose parents it can traverse"
  # A Unix socket path holds at most 107 bytes (sun_path).
  local socket="$RUN_DIR/.s.PGSQL.$PGBOUNCER_PORT"
  ((${#socket} <= 107)) \
    || fail "the socket path $socket is ${#socket} bytes, over the 107 a Unix socket allows: set KIT_CLUSTER_DIR to a shorter folder"
  $PRIVATE || ln -sfn "$CLUSTER_DIR" "$KIT_DIR/cluster"
}

# The cluster directory belongs to one checkout (recorded in it); another checkout that lands on the
# same directory (KIT_CLUSTER_DIR set to it) is refused rather than sharing the cluster.
claim_cluster_dir() {
  install -d -m 755 "$CLUSTER_DIR"
  if [[ -s $OWNER_FILE ]]; then
    [[ $(cat "$OWNER_FILE") == "$ROOT" ]] \
      || fail "$CLUSTER_DIR belongs to the checkout $(cat "$OWNER_FILE"); set KIT_CLUSTER_DIR to another folder for $ROOT"
  else
    printf '%s' "$ROOT" >"$OWNER_FILE"
  fi
}

# Whether something already listens on 127.0.0.1:PORT.
port_taken() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_port() {
  local name="$1" port="$2" variable="$3"
  ! port_taken "$port" \
    || fail "$name cannot listen on 127.0.0.1:$port: another process has it (another checkout's stack? its \`make status\` says); choose a free port with $variable=..."
}

# Serialises concurrent runs (say `make test` next to `make up`).
take_lock() {
  exec 9>"$KIT_DIR/stack.lock"
  flock 9
}

# --- secrets ---------------------------------------------------------------

# Creates a role's password on first use: 48 hex characters, URL-safe. Prints whether it created one.
ensure_password() {
  local file="$SECRETS_DIR/$1.password"
  if [[ -s $file ]]; then echo false; return; fi
  (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$file")
  echo true
}

# --- PostgreSQL ------------------------------------------------------------

postgres_running() { as_db_user "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; }

# --- TLS -------------------------------------------------------------------

# Whether a certificate exists and stays valid for at least 30 more days.
cert_fresh() { [[ -s $1 ]] && openssl x509 -in "$1" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; }

# The cluster's CA and server certificate (ECDSA P-256), made on first use and remade when about
# to expire. Prints "changed" when the server certificate was (re)made.
ensure_certificates() {
  local extensions
  install -d -m 755 "$TLS_DIR"
  if ! cert_fresh "$CA_CERT" || [[ ! -s $CA_KEY ]]; then
    step "tls: creating the cluster's certificate authority in $TLS_DIR" >&2
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -days 3650 -subj "/CN=pgvector-lambda-kit local CA $(basename "$CLUSTER_DIR")" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$CA_KEY" -out "$CA_CERT" >"$TLS_DIR/openssl.log" 2>&1) \
      || fail "openssl could not create the CA; log: $TLS_DIR/openssl.log"
    chmod 644 "$CA_CERT"
    rm -f "$SERVER_CERT"
  fi
  if cert_fresh "$SERVER_CERT" && openssl verify -CAfile "$CA_CERT" "$SERVER_CERT" >/dev/null 2>&1; then
    return
  fi
  step "tls: issuing the server certificate (IP 127.0.0.1, DNS localhost)" >&2
  extensions="$(mktemp)"
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$extensions"
  (umask 077 && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$SERVER_KEY.tmp" -out "$TLS_DIR/server.csr" >"$TLS_DIR/openssl.log" 2>&1 \
    && openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$CA_CERT" -CAkey "$CA_KEY" \
      -set_serial "0x$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" -days 825 \
      -extfile "$extensions" -out "$SERVER_CERT" >>"$TLS_DIR/openssl.log" 2>&1) \
    || { rm -f "$extensions"; fail "openssl could not issue the server certificate; log: $TLS_DIR/openssl.log"; }
  rm -f "$extensions" "$TLS_DIR/server.csr"
  chmod 644 "$SERVER_CERT"
  # PostgreSQL refuses a key that others can read; both servers run as the database's OS user.
  [[ $EUID -ne 0 ]] || chown "$DB_OS_USER" "$SERVER_KEY.tmp"
  mv -f "$SERVER_KEY.tmp" "$SERVER_KEY"
  echo changed
}

init_cluster() {
  [[ -s $PGDATA/PG_VERSION ]] && return 0
  step "postgres: creating the cluster in $PGDATA"
  db_user_dir 700 "$PGDATA"
  as_db_user "$PG_BIN/initdb" -D "$PGDATA" -U "$DB_OS_USER" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/initdb.log" >&2; fail "initdb failed; log: $LOG_DIR/initdb.log"; }
  echo "include 'kit.conf'" | as_db_user tee -a "$PGDATA/postgresql.conf" >/dev/null
}

# The cluster's settings, rewritten on every start so port changes apply.
# Prints "changed" when either file changed.
write_postgres_config() {
  local conf="$RUN_DIR/kit.conf.new" hba="$RUN_DIR/pg_hba.conf.new" changed=""
  cat >"$conf" <<EOF
# Generated by scripts/stack.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = '$SERVER_CERT'
ssl_key_file = '$SERVER_KEY'
ssl_min_protocol_version = 'TLSv1.2'
port = $PG_PORT
unix_socket_directories = '$RUN_DIR'
max_connections = 200
shared_buffers = 512MB
maintenance_work_mem = 1GB           # HNSW index builds
password_encryption = 'scram-sha-256'
# Production durability: an acknowledged commit survives a crash, so crash tests and benchmark
# figures mean what they say (synchronous_commit = off lost 22 of 1,050 acknowledged ingest
# records when PostgreSQL was crash-stopped mid-stream).
fsync = on
synchronous_commit = on
full_page_writes = on
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  cat >"$hba" <<EOF
# Generated by scripts/stack.sh on every start; edit the script, not this file.
# TYPE  DATABASE  USER                    ADDRESS       METHOD
# TCP only with TLS (clients verify the certificate; see sslmode in .kit/env).
local     all       $DB_OS_USER             peer
hostssl   all       all       127.0.0.1/32  scram-sha-256
hostnossl all       all       127.0.0.1/32  reject
EOF
  for pair in "$conf:$PGDATA/kit.conf" "$hba:$PGDATA/pg_hba.conf"; do
    if as_db_user cmp -s "${pair%%:*}" "${pair#*:}"; then continue; fi
    as_db_user cp "${pair%%:*}" "${pair#*:}"
    changed=changed
  done
  rm -f "$conf" "$hba"
  echo "$changed"
}

start_postgres() {
  local tls_changed="$1" config_changed
  if postgres_running; then
    config_changed="$(write_postgres_config)"
    if [[ -n $tls_changed$config_changed ]]; then
      step "postgres: running on 127.0.0.1:$PG_PORT, reloading its changed configuration"
      as_db_user "$PG_BIN/pg_ctl" reload -D "$PGDATA" >/dev/null
    else
      step "postgres: already running on 127.0.0.1:$PG_PORT"
    fi
    return
  fi
  require_free_port PostgreSQL "$PG_PORT" KIT_PG_PORT
  write_postgres_config >/dev/null
  step "postgres: starting on 127.0.0.1:$PG_PORT (log: $LOG_DIR/postgresql.log)"
  as_db_user "$PG_BIN/pg_ctl" start -D "$PGDATA" -l "$LOG_DIR/postgresql.log" -w -t 60 >/dev/null \
    || { tail -n 20 "$LOG_DIR/postgresql.log" >&2; fail "PostgreSQL did not start; log: $LOG_DIR/postgresql.log"; }
}

stop_postgres() {
  if ! postgres_running; then
    step "postgres: not running"
    return
  fi
  step "postgres: stopping"
  as_db_user "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 >/dev/null
}

# The admin role and the kit database. The admin password is (re)set only when the role is created or
# its password file is new, so the SCRAM secret PgBouncer holds stays valid. The functions' login
# roles are `kit roles apply --local`'s (provision_function_roles), after the migrations.
ensure_roles_and_database() {
  local reset_admin="$1"
  superuser_psql <<EOF
SET client_min_messages = warning;
\set admin_password '$(read_password "$ADMIN_ROLE")'
\set reset_admin $reset_admin

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ADMIN_ROLE') AS create_admin \gset
\if :create_admin
  CREATE ROLE $ADMIN_ROLE SUPERUSER LOGIN PASSWORD :'admin_password';
\elif :reset_admin
  ALTER ROLE $ADMIN_ROLE PASSWORD :'admin_password';
\endif
ALTER ROLE $ADMIN_ROLE SUPERUSER LOGIN;
-- Each function logs in as its own role now: the one role that had every group goes (kept, without
-- its groups, if something still holds on to it).
DO \$\$
BEGIN
  DROP ROLE IF EXISTS $LEGACY_APP_ROLE;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING '$LEGACY_APP_ROLE kept: %', SQLERRM;
END
\$\$;

SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE') AS create_database \gset
\if :create_database
  CREATE DATABASE $DATABASE OWNER $ADMIN_ROLE;
\endif
EOF
}

# The schema (the migrations create the function groups and their grants), then the functions'
# login roles with their passwords from .kit/secrets: the same `kit roles apply` as on AWS.
provision_function_roles() {
  local admin
  admin="$(admin_url "$(read_password "$ADMIN_ROLE")")"
  step "postgres: migrations, then the functions' login roles ($(function_roles | paste -sd ' ' -))"
  DATABASE_ADMIN_URL="$admin" kit_cli migrate up || fail "kit migrate up failed"
  DATABASE_ADMIN_URL="$admin" kit_cli roles apply --local --secrets-dir "$SECRETS_DIR" \
    || fail "kit roles apply --local failed"
}

# The kit CLI: KIT_BIN when set, otherwise built and run by cargo.
kit_cli() {
  if [[ -n ${KIT_BIN:-} ]]; then "$KIT_BIN" "$@"; else cargo run --locked -q -p kit -- "$@"; fi
}

# --- PgBouncer -------------------------------------------------------------

# The pid of our PgBouncer, if it runs: the pid file names a live (not zombie) pgbouncer process.
pgbouncer_pid() {
  local file="${1:-$PGBOUNCER_PID_FILE}" pid comm state
  pid="$(cat "$file" 2>/dev/null)" || return 1 # PgBouncer removes it as it exits
  [[ -n $pid ]] || return 1
  read -r _ comm state _ 2>/dev/null <"/proc/$pid/stat" || return 1
  [[ $comm == "(pgbouncer)" && $state != Z ]] || return 1
  echo "$pid"
}

pgbouncer_running() { pgbouncer_pid "$@" >/dev/null; }

# The SCRAM secrets of the login roles, copied from pg_authid: PgBouncer authenticates clients with
# them and, holding the same secrets as the server, logs in to PostgreSQL on their behalf.
# Prints "changed" when the file changed.
write_pgbouncer_auth_file() {
  local tmp="$PGBOUNCER_AUTH_FILE.tmp"
  superuser_psql -At -c "SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid
                         WHERE rolname IN ('$ADMIN_ROLE'$(printf ", '%s'" $(function_roles))) ORDER BY rolname" \
    | (umask 077 && cat >"$tmp")
  [[ $EUID -ne 0 ]] || chown "$DB_OS_USER" "$tmp"
  if cmp -s "$tmp" "$PGBOUNCER_AUTH_FILE"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$PGBOUNCER_AUTH_FILE"
    echo changed
  fi
}

# The repo's config must hold only a [pgbouncer] section: PgBouncer resets a section to its defaults
# each time its header appears, so the local overrides follow the %include without a header of
# their own, still inside the included [pgbouncer] section.
check_base_pgbouncer_config() {
  local other_sections
  other_sections="$(grep -E '^[[:space:]]*\[' "$BASE_PGBOUNCER_INI" | grep -vE '^[[:space:]]*\[pgbouncer\]' | tr '\n' ' ' || true)"
  [[ -z $other_sections ]] \
    || fail "$BASE_PGBOUNCER_INI may hold only a [pgbouncer] section (the wrappers add [databases]); found: $other_sections"
}

# The repo's pgbouncer.ini (what production runs), then local overrides only: later values win.
# Prints "changed" when the file changed.
write_pgbouncer_config() {
  local tmp="$PGBOUNCER_INI.tmp" base_changed=""
  # PgBouncer reads a copy: the checkout itself may be unreadable to the database's OS user.
  if ! cmp -s "$BASE_PGBOUNCER_INI" "$PGBOUNCER_BASE_COPY"; then
    install -m 644 "$BASE_PGBOUNCER_INI" "$PGBOUNCER_BASE_COPY"
    base_changed=changed
  fi
  cat >"$tmp" <<EOF
;; Generated by scripts/stack.sh on every \`up\` from pgbouncer/pgbouncer.ini (copied beside this
;; file); edit the script or that file, not this one.
[pgbouncer]
%include $PGBOUNCER_BASE_COPY

;; Local overrides: where to listen and log, how to authenticate. No [pgbouncer] header here: a
;; repeated header resets the section to PgBouncer's defaults, dropping every included value.
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $RUN_DIR
logfile = $LOG_DIR/pgbouncer.log
pidfile = $PGBOUNCER_PID_FILE
auth_type = scram-sha-256
auth_file = $PGBOUNCER_AUTH_FILE
admin_users = $ADMIN_ROLE
stats_users = $ADMIN_ROLE
;; TLS on both hops: clients must use it, and PgBouncer verifies PostgreSQL's certificate.
client_tls_sslmode = require
client_tls_key_file = $SERVER_KEY
client_tls_cert_file = $SERVER_CERT
server_tls_sslmode = verify-full
server_tls_ca_file = $CA_CERT

[databases]
;; Any database name goes to the local cluster: tests create one database each.
* = host=127.0.0.1 port=$PG_PORT
EOF
  chmod 644 "$tmp"
  if cmp -s "$tmp" "$PGBOUNCER_INI"; then
    rm -f "$tmp"
    echo "$base_changed"
  else
    mv -f "$tmp" "$PGBOUNCER_INI"
    echo changed
  fi
}

start_pgbouncer() {
  local config_changed="$1"
  if pgbouncer_running; then
    if [[ -n $config_changed ]]; then
      step "pgbouncer: running on 127.0.0.1:$PGBOUNCER_PORT, reloading its changed configuration"
      kill -HUP "$(pgbouncer_pid)"
    else
      step "pgbouncer: already running on 127.0.0.1:$PGBOUNCER_PORT"
    fi
    return
  fi
  require_free_port PgBouncer "$PGBOUNCER_PORT" KIT_PGBOUNCER_PORT
  # Not running, so a pid file left behind is stale (a killed PgBouncer cannot remove its own).
  # PgBouncer refuses to start over one whose pid still answers, and a killed daemon can linger
  # as a zombie when nothing reaps it (PID 1 in a container).
  rm -f "$PGBOUNCER_PID_FILE"
  step "pgbouncer: starting on 127.0.0.1:$PGBOUNCER_PORT (log: $LOG_DIR/pgbouncer.log)"
  # Up to max_client_conn clients plus the server connections: lift the soft descriptor limit
  # (inside, as runuser's PAM session resets it).
  # shellcheck disable=SC2016 # expanded by the inner shell
  as_db_user sh -c 'ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"' "$PGBOUNCER" -q -d "$PGBOUNCER_INI" \
    || { tail -n 20 "$LOG_DIR/pgbouncer.log" >&2 || true; fail "PgBouncer did not start; log: $LOG_DIR/pgbouncer.log"; }
}

stop_pgbouncer() {
  local file="${1:-$PGBOUNCER_PID_FILE}" pid i
  if ! pid="$(pgbouncer_pid "$file")"; then
    step "pgbouncer: not running"
    return
  fi
  step "pgbouncer: stopping"
  kill -INT "$pid" # safe shutdown: lets running transactions finish
  for ((i = 0; i < 100; i++)); do
    pgbouncer_running "$file" || return 0
    sleep 0.1
  done
  kill -QUIT "$pid" 2>/dev/null || true # immediate shutdown
  while pgbouncer_running "$file"; do sleep 0.1; done
}

# --- readiness and the env file --------------------------------------------

# Waits until a real login works: the admin role straight to PostgreSQL, the app role through PgBouncer.
wait_until_accepting() {
  local name="$1" port="$2" role="$3" i
  for ((i = 0; i < 100; i++)); do
    login_works "$port" "$role" 2>/dev/null && return 0
    sleep 0.2
  done
  login_works "$port" "$role" || fail "$name does not accept $role on 127.0.0.1:$port"
}

login_works() {
  PGPASSWORD="$(read_password "$2")" PGSSLMODE=verify-full PGSSLROOTCERT="$CA_CERT" "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$1" -U "$2" -d "$DATABASE" \
    -c 'SELECT 1' >/dev/null
}

write_env_file() {
  (
    umask 077
    cat >"$ENV_FILE" <<EOF
# Generated by scripts/stack.sh up: the local stack's connection settings. Usage: . .kit/env
export KIT_CACHE='$KIT_CACHE'
export KIT_PG_PORT=$PG_PORT
export KIT_PGBOUNCER_PORT=$PGBOUNCER_PORT
# Through PgBouncer (transaction pooling), one login role per function: each function reads its
# own variable (it wins over DATABASE_URL), so all three can share one environment.
export INGEST_DATABASE_URL='$(function_url ingest)'
export SEARCH_DATABASE_URL='$(function_url search)'
export PURGE_DATABASE_URL='$(function_url purge)'
# The default for tools that take one URL: the ingest role (reads and writes embeddings).
export DATABASE_URL='$(function_url ingest)'
# Straight to PostgreSQL, as a superuser: migrations, test databases, admin work.
export DATABASE_ADMIN_URL='$(admin_url "$(read_password "$ADMIN_ROLE")")'
case ":\$PATH:" in
  *":\$KIT_CACHE/venv/bin:"*) ;;
  *) export PATH="\$KIT_CACHE/venv/bin:\$KIT_CACHE/pgbouncer/bin:\$PATH" ;;
esac
EOF
  )
  chmod 600 "$ENV_FILE"
}

# --- subcommands -----------------------------------------------------------

# Before the cluster lived outside the checkout it was .kit/pgdata: stop that one and move it.
move_legacy_cluster() {
  ! $PRIVATE || return 0
  [[ -s $LEGACY_PGDATA/PG_VERSION ]] || return 0
  stop_legacy_servers
  if [[ -s $PGDATA/PG_VERSION ]]; then
    step "postgres: $LEGACY_PGDATA is an older cluster of this checkout, no longer used (make wipe deletes it)"
    return
  fi
  step "postgres: moving the cluster from $LEGACY_PGDATA to $PGDATA"
  mv "$LEGACY_PGDATA" "$PGDATA"
  rm -rf "$KIT_DIR/run" "$KIT_DIR/pgbouncer.ini" "$KIT_DIR/pgbouncer-auth.txt"
}

stop_legacy_servers() {
  ! $PRIVATE || return 0
  [[ -d $LEGACY_PGDATA ]] || return 0
  stop_pgbouncer "$KIT_DIR/run/pgbouncer.pid" >/dev/null
  if as_db_user "$PG_BIN/pg_ctl" status -D "$LEGACY_PGDATA" >/dev/null 2>&1; then
    step "postgres: stopping the older cluster in $LEGACY_PGDATA"
    as_db_user "$PG_BIN/pg_ctl" stop -D "$LEGACY_PGDATA" -m fast -w -t 60 >/dev/null
  fi
}

cmd_up() {
  local reset_admin tls_changed auth_changed config_changed role
  check_prerequisites
  prepare_directories
  take_lock
  move_legacy_cluster
  reset_admin="$(ensure_password "$ADMIN_ROLE")"
  for role in $(function_roles); do ensure_password "$role" >/dev/null; done
  init_cluster
  tls_changed="$(ensure_certificates)"
  start_postgres "$tls_changed"
  ensure_roles_and_database "$reset_admin"
  wait_until_accepting PostgreSQL "$PG_PORT" "$ADMIN_ROLE"
  provision_function_roles
  auth_changed="$(write_pgbouncer_auth_file)"
  config_changed="$(write_pgbouncer_config)"
  start_pgbouncer "$tls_changed$auth_changed$config_changed"
  for role in $(function_roles); do wait_until_accepting PgBouncer "$PGBOUNCER_PORT" "$role"; done
  write_env_file
  step "ready: . $ENV_FILE  (DATABASE_URL via PgBouncer :$PGBOUNCER_PORT, DATABASE_ADMIN_URL direct :$PG_PORT)"
}

cmd_down() {
  if [[ ! -d $CLUSTER_DIR && ! -d $LEGACY_PGDATA ]]; then
    step "nothing to stop: no cluster in $CLUSTER_DIR"
    return
  fi
  install -d -m 700 "$KIT_DIR"
  take_lock
  stop_legacy_servers
  stop_pgbouncer
  if [[ -d $PGDATA ]]; then stop_postgres; else step "postgres: no cluster"; fi
}

cmd_wipe() {
  cmd_down
  step "deleting the cluster: $CLUSTER_DIR"
  rm -rf "$CLUSTER_DIR"
  $PRIVATE || rm -rf "$LEGACY_PGDATA" "$KIT_DIR/cluster"
}

# Fault injection for the tests that own a stack: PostgreSQL restarted with a shutdown mode (fast:
# sessions terminated cleanly; immediate: a crash, recovery from the WAL at start).
cmd_pg_restart() {
  local mode="${1:-}"
  [[ $mode == fast || $mode == immediate ]] || fail "usage: scripts/stack.sh pg-restart fast|immediate"
  postgres_running || fail "PostgreSQL is not running"
  step "postgres: restarting (-m $mode)"
  as_db_user "$PG_BIN/pg_ctl" restart -D "$PGDATA" -m "$mode" -w -t 60 -l "$LOG_DIR/postgresql.log" >/dev/null \
    || { tail -n 20 "$LOG_DIR/postgresql.log" >&2; fail "PostgreSQL did not restart; log: $LOG_DIR/postgresql.log"; }
}

# PgBouncer killed without a chance to say goodbye to its clients (SIGKILL).
cmd_pgbouncer_kill() {
  local pid
  pid="$(pgbouncer_pid)" || fail "PgBouncer is not running"
  step "pgbouncer: killing $pid (SIGKILL)"
  kill -KILL "$pid"
  while pgbouncer_running; do sleep 0.05; done
}

cmd_status() {
  local ok=0
  echo "cluster:   $CLUSTER_DIR$([[ -d $CLUSTER_DIR ]] || echo ' (not created)')"
  if [[ -d $PGDATA ]] && postgres_running; then
    echo "postgres:  running  postgres://$ADMIN_ROLE@127.0.0.1:$PG_PORT/$DATABASE  (log: $LOG_DIR/postgresql.log)"
  else
    echo "postgres:  stopped$([[ -d $PGDATA ]] || echo ' (no data yet: run up)')"
    ok=3
  fi
  if pgbouncer_running; then
    echo "pgbouncer: running  postgres://{$(function_roles | paste -sd, -)}@127.0.0.1:$PGBOUNCER_PORT/$DATABASE  (admin console: postgres://$ADMIN_ROLE@127.0.0.1:$PGBOUNCER_PORT/pgbouncer)"
  else
    echo "pgbouncer: stopped"
    ok=3
  fi
  echo "env file:  $ENV_FILE$([[ -f $ENV_FILE ]] || echo ' (not written yet: run up)')"
  return "$ok"
}

cmd_env() {
  [[ -f $ENV_FILE ]] || fail "no $ENV_FILE yet: run scripts/stack.sh up (or make up)"
  echo "$ENV_FILE"
}

main() {
  cd "$ROOT"
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    wipe) cmd_wipe ;;
    env) cmd_env ;;
    dir) echo "$CLUSTER_DIR" ;;
    pg-restart) cmd_pg_restart "${2:-}" ;;
    pgbouncer-kill) cmd_pgbouncer_kill ;;
    *) fail "usage: scripts/stack.sh up|down|status|wipe|env|dir|pg-restart fast|immediate|pgbouncer-kill" ;;
  esac
}

main "$@"
